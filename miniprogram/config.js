// The one setting of the login page: the public origin of the wechat-callback
// service (https, no trailing slash). It must also be a "request" domain in
// the Mini Program's server domain settings.
module.exports = {
  apiBase: 'https://login.example.com'
};
