/* engineshed: boots the vendored GraphiQL against the gateway, fully offline.
 *
 * Loaded as a same-origin script (the page's CSP allows no inline script). The page tells it
 * the endpoint through data-endpoint on #graphiql (and the CSP style nonce through
 * data-style-nonce); the bearer token comes from the #es-token
 * box (or a #token=... fragment, as `engineshed dev` prints) and is remembered in localStorage.
 */
(function () {
  "use strict";

  var TOKEN_KEY = "engineshed.graphiql.token";
  var DEFAULT_QUERY = [
    "# engineshed GraphiQL",
    "#",
    "# Every operation needs a bearer token: paste it",
    "# into the box above (kept in localStorage).",
    "# Other headers go in the Headers tab below; an",
    "# Authorization header set there wins.",
    "#",
    "# Ctrl-Enter runs, Ctrl-Space completes.",
    "query Libraries {",
    "  libraries(limit: 10) {",
    "    count",
    "    records {",
    "      id",
    "      name",
    "      version",
    "    }",
    "  }",
    "}",
    ""
  ].join("\n");

  // Surfaces CSP violations on <html data-csp-violations="..."> so tests (and people) can see them.
  document.addEventListener("securitypolicyviolation", function (event) {
    var seen = document.documentElement.getAttribute("data-csp-violations");
    var entry = event.violatedDirective + " " + (event.blockedURI || "inline");
    document.documentElement.setAttribute("data-csp-violations", seen ? seen + "; " + entry : entry);
  });

  function readToken() {
    try {
      return window.localStorage.getItem(TOKEN_KEY) || "";
    } catch (err) {
      return "";
    }
  }

  function storeToken(token) {
    try {
      if (token) {
        window.localStorage.setItem(TOKEN_KEY, token);
      } else {
        window.localStorage.removeItem(TOKEN_KEY);
      }
    } catch (err) {
      /* storage disabled: the token lives for this page only */
    }
  }

  function cleanToken(raw) {
    return String(raw || "").trim().replace(/^bearer\s+/i, "");
  }

  function hasHeader(headers, name) {
    var wanted = name.toLowerCase();
    return Object.keys(headers).some(function (key) {
      return key.toLowerCase() === wanted;
    });
  }

  // Whether the server refused the request's credentials: HTTP 401, or a GraphQL authentication_error.
  function refusedCredentials(status, reply) {
    if (status === 401) {
      return true;
    }
    var errors = (reply && reply.errors) || [];
    return errors.some(function (error) {
      return ((error && error.extensions) || {}).code === "authentication_error";
    });
  }

  function makeFetcher(endpoint, token, onVerdict) {
    return function fetcher(params, options) {
      var headers = { "Content-Type": "application/json", Accept: "application/json" };
      var extra = (options && options.headers) || {};
      Object.keys(extra).forEach(function (key) {
        headers[key] = String(extra[key]);
      });
      // Only a reply to the box's own token says anything about it (a header from the editor wins over it).
      var usesBoxToken = Boolean(token) && !hasHeader(extra, "authorization");
      if (usesBoxToken) {
        headers.Authorization = "Bearer " + token;
      }
      return window
        .fetch(endpoint, {
          method: "POST",
          headers: headers,
          body: JSON.stringify(params),
          credentials: "same-origin"
        })
        .then(function (response) {
          return response.text().then(function (text) {
            var reply;
            try {
              reply = JSON.parse(text);
            } catch (err) {
              reply = {
                errors: [{ message: "HTTP " + response.status + ": the gateway did not answer with JSON", body: text.slice(0, 500) }]
              };
            }
            if (usesBoxToken) {
              if (refusedCredentials(response.status, reply)) {
                onVerdict(token, false);
              } else if (response.ok) {
                onVerdict(token, true);
              }
            }
            return reply;
          });
        });
    };
  }

  var container = document.getElementById("graphiql");
  var endpoint = container.getAttribute("data-endpoint") || "/v3/graphql";
  var styleNonce = container.getAttribute("data-style-nonce");
  if (styleNonce) {
    // GraphiQL's dialogs inject a <style> element; the bundled get-nonce reads this global.
    window.__webpack_nonce__ = styleNonce;
  }
  var input = document.getElementById("es-token");
  var state = document.getElementById("es-token-state");
  var root = window.ReactDOM.createRoot(container);

  // `engineshed dev` prints a link carrying its token in the fragment (#token=...), which browsers never
  // send to a server: take it into the token box, then off the address bar and out of the history entry.
  function takeTokenFromFragment() {
    var hash = window.location.hash.replace(/^#/, "");
    if (!hash) {
      return "";
    }
    var params = new URLSearchParams(hash);
    if (!params.has("token")) {
      return "";
    }
    var found = cleanToken(params.get("token"));
    params.delete("token");
    var rest = params.toString();
    window.history.replaceState(window.history.state, "", window.location.pathname + window.location.search + (rest ? "#" + rest : ""));
    return found;
  }

  var linked = takeTokenFromFragment();
  if (linked) {
    storeToken(linked);
  }
  var token = linked || cleanToken(readToken());

  // The token box's state says what the server last said of the token, not merely that one was typed.
  function showState(verdict) {
    if (!token) {
      state.textContent = "no token: requests will be rejected";
      state.className = "es-missing";
    } else if (verdict === false) {
      state.textContent = "token refused by the server: paste a valid one";
      state.className = "es-refused";
    } else if (verdict === true) {
      state.textContent = "token set · accepted";
      state.className = "es-ok";
    } else {
      state.textContent = "token set";
      state.className = "es-unchecked";
    }
  }

  function onVerdict(checked, accepted) {
    if (checked === token) {
      showState(accepted);
    }
  }

  function render() {
    showState(null);
    root.render(
      window.React.createElement(window.GraphiQL, {
        // A new fetcher per token makes GraphiQL fetch the schema again with it.
        fetcher: makeFetcher(endpoint, token, onVerdict),
        defaultQuery: DEFAULT_QUERY,
        isHeadersEditorEnabled: true,
        shouldPersistHeaders: false
      })
    );
  }

  input.value = token;
  input.addEventListener("change", function () {
    var next = cleanToken(input.value);
    input.value = next;
    if (next !== token) {
      token = next;
      storeToken(token);
      render();
    }
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter") {
      input.blur();
    }
  });
  render();
})();
