// Only needed when this folder is used as a Mini Program of its own; a team
// copying the login page into its Mini Program keeps its own app.js.
App({});
