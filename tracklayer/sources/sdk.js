/*! TrackLayer browser SDK: first-party events to this host's POST /v1/events.
 * No dependencies. API (CONTRACT.md "Browser SDK"): init({writeKey, host}), page(props),
 * track(name, props, {event_id}) -> event_id, identify(userId, traits), consent({...}).
 * Delivery: every event is kept in localStorage until the host acknowledged it, sent with
 * fetch keepalive (survives unload; sendBeacon where fetch is missing), and what is still
 * kept is sent again on the next page load; its message_id makes the retry harmless. */
(function (w, d) {
  "use strict";
  var tl = w.tracklayer = w.tracklayer || {};
  if (tl.loaded) return;
  var queued = tl.q || [];
  var script = d.currentScript;
  var cfg = { writeKey: "", host: "" };
  var KEEP = "tl_pending", MAX_KEPT = 100, MAX_AGE = 7 * 864e5;
  var nav = w.navigator || {};
  var store;
  try { store = w.localStorage; store.getItem(KEEP); } catch (e) { store = null; }

  // Source name -> canonical name (CONTRACT.md "Canonical events"), lowercased as the
  // server folds case; canonical names stand for themselves.
  var NAMES = Object.create(null), TABLE = ("order completed:purchase,order refunded:refund,product added:" +
    "add_to_cart,product removed:remove_from_cart,checkout started:begin_checkout,payment " +
    "info entered:add_payment_info,product viewed:view_item,product list viewed:" +
    "view_item_list,cart viewed:view_cart,products searched:search,product added to " +
    "wishlist:add_to_wishlist,signed up:sign_up,signed in:login,lead generated:lead,lead " +
    "created:lead,trial started:start_trial,subscription started:subscribe").split(",");
  for (var i = 0; i < TABLE.length; i++) {
    var pair = TABLE[i].split(":");
    NAMES[pair[0]] = NAMES[pair[1]] = pair[1];
  }
  NAMES.page_view = "page_view";
  // Platform cookies forwarded as user.click_ids (fbp and fbc have their own fields).
  var COOKIES = { _ttp: "ttp", _epik: "epik", _scid: "scid", _rdt_uuid: "rdt_uuid", _ga: "ga" };
  var TRAITS = { email: 0, phone: 0, first_name: "firstName", last_name: "lastName", city: 0,
    state: 0, zip: "postalCode", country: 0, date_of_birth: "birthday", gender: 0, external_id: 0 };

  function get(key) { try { return store && store.getItem(key); } catch (e) { return null; } }
  function put(key, value) { try { if (store) store.setItem(key, value); } catch (e) { /* full */ } }
  function parse(text, fallback) { try { return JSON.parse(text) || fallback; } catch (e) { return fallback; } }
  function cookie(name) {
    var m = d.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    if (!m) return "";
    try { return decodeURIComponent(m[1]); } catch (e) { return m[1]; }
  }
  function uuid() {
    var b = new Uint8Array(16), h = "";
    (w.crypto || w.msCrypto).getRandomValues(b);
    b[6] = b[6] & 15 | 64;
    b[8] = b[8] & 63 | 128;
    for (var i = 0; i < 16; i++) h += (i == 4 || i == 6 || i == 8 || i == 10 ? "-" : "") + (b[i] + 256).toString(16).slice(1);
    return h;
  }

  // The id the host set as a cookie wins (it outlives script storage under Safari's ITP);
  // this script never writes that cookie, which would make it a 7-day script cookie.
  function anonymousId() {
    var id = cookie("tl_aid") || get("tl_aid") || uuid();
    if (get("tl_aid") != id) put("tl_aid", id);
    return id;
  }

  function user() {
    var u = { anonymous_id: anonymousId(), user_agent: nav.userAgent || "", click_ids: {} };
    var uid = get("tl_uid"), v;
    if (uid) u.user_id = uid;
    if ((v = cookie("_fbp"))) u.fbp = v;
    if ((v = cookie("_fbc"))) u.fbc = v;
    for (var k in COOKIES) if ((v = cookie(k))) u.click_ids[COOKIES[k]] = v;
    return u;
  }

  function event(name, properties, eventId) {
    var id = uuid(), e = {
      name: String(name), message_id: id, event_id: eventId ? String(eventId) : id,
      timestamp: new Date().toISOString(), user: user(), properties: properties || {},
      context: { page_url: location.href, referrer: d.referrer, locale: nav.language || "" }
    };
    var consent = parse(get("tl_consent"), null);
    if (consent) e.consent = consent;
    return e;
  }

  // --- delivery ---------------------------------------------------------------------
  function kept() { return parse(get(KEEP), []); }
  function keep(events) {
    var all = kept().concat(events);
    put(KEEP, JSON.stringify(all.slice(-MAX_KEPT)));
  }
  function forget(ids) {
    put(KEEP, JSON.stringify(kept().filter(function (e) { return ids.indexOf(e.message_id) < 0; })));
  }

  function send(events) {
    if (!cfg.writeKey || !cfg.host) return;
    var ids = [], now = new Date().toISOString();
    for (var i = 0; i < events.length; i++) { events[i].sent_at = now; ids.push(events[i].message_id); }
    // writeKey in the body and text/plain: a "simple" request (no preflight), and the
    // only form sendBeacon can send, since it cannot set headers.
    var body = JSON.stringify({ writeKey: cfg.writeKey, batch: events });
    var url = cfg.host + "/v1/events";
    if (w.fetch) {
      w.fetch(url, {
        method: "POST", body: body, headers: { "Content-Type": "text/plain" },
        // keepalive lets the request outlive the page; browsers allow 64 KiB of such
        // bodies in flight, so a large batch (a retry) goes without it.
        credentials: "include", keepalive: body.length < 30000
      }).then(function (r) {
        // 2xx: stored. Other 4xx but 408/429 will never succeed: drop. Else keep for later.
        if (r.ok || (r.status >= 400 && r.status < 500 && r.status != 408 && r.status != 429)) forget(ids);
      }, function () { /* kept: sent again on the next page load */ });
    } else if (nav.sendBeacon && nav.sendBeacon(url, new Blob([body], { type: "text/plain" }))) {
      forget(ids);
    }
  }

  function emit(e) { keep([e]); send([e]); return e.event_id; }

  // What an earlier page (or this one, before it had a write key) could not deliver.
  function retry() {
    var now = Date.now(), earlier = kept().filter(function (e) { return now - Date.parse(e.timestamp) < MAX_AGE; });
    put(KEEP, JSON.stringify(earlier));
    if (earlier.length) send(earlier);
  }

  // --- API ----------------------------------------------------------------------------
  function init(options) {
    options = options || {};
    if (options.writeKey) cfg.writeKey = String(options.writeKey);
    if (options.host) cfg.host = String(options.host).replace(/\/+$/, "");
    if (tl.loaded) retry();
  }

  function page(properties) {
    var p = {}, k;
    for (k in properties || {}) p[k] = properties[k];
    if (p.title == null) p.title = d.title;
    if (p.path == null) p.path = location.pathname;
    return emit(event("page_view", p));
  }

  // The event id to hand to the platform's pixel for browser/server dedup. An order
  // event gets "<canonical name>:<order_id>", the id the server derives for the same order
  // from any route (a Shopify webhook, a backend); other events their own id. It is always
  // sent explicitly, so what the page got is what is delivered.
  function track(name, properties, options) {
    properties = properties || {};
    var id = options && options.event_id, canonical = NAMES[String(name).toLowerCase()];
    var order = properties.order_id;
    if (!id && canonical && order != null && order !== "") id = canonical + ":" + order;
    return emit(event(name, properties, id));
  }

  function identify(userId, traits) {
    if (userId != null && userId !== "") put("tl_uid", String(userId));
    var e = event("identify"), t = traits || {}, v;
    for (var k in TRAITS) {
      v = t[k] != null ? t[k] : TRAITS[k] && t[TRAITS[k]];
      if (v != null && v !== "") e.user[k] = String(v);
    }
    return emit(e);
  }

  // The visitor's choice, stated on every later event; "consent_updated" tells the host
  // now (it updates the visitor's profile and is delivered nowhere).
  function consent(choices) {
    var c = parse(get("tl_consent"), {}), k;
    for (k in choices || {}) c[k] = !!choices[k];
    put("tl_consent", JSON.stringify(c));
    return emit(event("consent_updated"));
  }

  function call(args) {
    var method = api[args[0]];
    return method ? method.apply(null, Array.prototype.slice.call(args, 1)) : undefined;
  }

  var api = { init: init, page: page, track: track, identify: identify, consent: consent,
    anonymousId: anonymousId };

  // Start: the script tag's data-write-key and origin, then any queued init(), then what a
  // previous page could not deliver, then the other queued calls in their order.
  if (script) {
    cfg.writeKey = script.getAttribute("data-write-key") || "";
    var m = /^https?:\/\/[^/]+/.exec(script.src || "");
    if (m) cfg.host = m[0];
  }
  for (i = 0; i < queued.length; i++) if (queued[i][0] == "init") call(queued[i]);
  retry();
  for (var name in api) tl[name] = api[name];
  tl.loaded = true;
  tl.q = { push: call };
  for (i = 0; i < queued.length; i++) if (queued[i][0] != "init") call(queued[i]);
})(window, document);
