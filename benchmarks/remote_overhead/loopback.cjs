// Preloaded into Portkey's gateway (NODE_OPTIONS=--require): its server listens on every interface (it takes a
// port, `--port=N`, but no host), so a listen() given only a port is bound to 127.0.0.1 instead. Nothing else
// changes; the request path is untouched.
"use strict";
const net = require("net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" && (args[1] === undefined || typeof args[1] === "function")) {
    args.splice(1, args[1] === undefined ? 1 : 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
