// The login page a scanned Mini Program code opens. Its behaviour is in
// logic.js; the backend's address is in config.js.
var logic = require('./logic.js');
var config = require('../../config.js');

Page(logic.page({ wx: wx, apiBase: config.apiBase }));
