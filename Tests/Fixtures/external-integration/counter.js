#!/usr/bin/env node
// A sync-integration SDK CLI for tests and demos: `spec`, `setup`, `sync`, one JSON message per line on stdout.
//
// Its activities depend only on the state it is given, like the worker tests' CountingIntegration: a sync with
// state {cursor: n} emits items n+1 … n+perSync and returns {cursor: n+perSync}. So the whole truth of a run is
// "items 1 … final cursor, once each", and a state that did not round-trip shows up as repeated or missing items.
//
// config.mode picks a misbehaviour, to show the worker contains it: hang, exit1, garbage, flood (100 MB on stdout),
// rotate (refreshes a token that does not end in "-rotated" — printing the new config — then sleeps a minute; with
// the rotated one it syncs normally: a provider that retires the old token at once).
// No dependencies: plain Node.js 18+.
"use strict";

const args = process.argv.slice(2);
const event = args[0];

function option(name) {
  const index = args.indexOf(name);
  if (index < 0 || index + 1 >= args.length) {
    process.stderr.write(`missing ${name}\n`);
    process.exit(2);
  }
  return JSON.parse(args[index + 1]);
}

function print(type, data) {
  process.stdout.write(JSON.stringify({ type, data }) + "\n");
}

function spec() {
  print("spec", {
    name: "Counter fixture",
    key: "counter",
    description: "Deterministic numbered items, for activity-sync's tests and `activity-sync dev`.",
    icon: "counter",
    schedule: { frequency: "*/5 * * * *" },
    auth: { api_key: { fields: [{ name: "token", label: "Token" }] } },
  });
}

function setup() {
  const body = option("--event-body");
  const definition = option("--integration-definition");
  if (definition.key !== "counter" && definition.slug !== "counter") {
    process.stderr.write(`unexpected integration definition ${JSON.stringify(definition)}\n`);
    process.exit(2);
  }
  const settings = {};
  if (body.schedule) settings.schedule = { frequency: body.schedule };
  print("account", {
    accountId: body.accountId || "counter-demo",
    // access_token is there for workers whose job decoder still insists on one; the fixture never needs it.
    config: {
      access_token: body.token || "counter-demo-token",
      mode: body.mode || "ok",
      perSync: body.perSync || 2,
      delayMs: body.delayMs || 0,
    },
    settings,
  });
}

function sync() {
  const config = option("--config");
  option("--integration-definition");
  const state = option("--state");
  // A CLI's stderr goes to the worker's log: this line proves the token in it is redacted.
  process.stderr.write(`counter sync with token ${config.access_token} from cursor ${state.cursor || 0}\n`);
  switch (config.mode) {
    case "hang":
      setInterval(() => {}, 1000);
      return;
    case "exit1":
      process.stderr.write(`giving up on purpose (token ${config.access_token})\n`);
      process.exit(1);
    case "garbage":
      print("activity", { text: "looks fine", sourceURL: "https://counter.example/garbage" });
      process.stdout.write("this line is not JSON\n");
      print("state", { cursor: 1 });
      return;
    case "rotate":
      if (!config.access_token.endsWith("-rotated")) {
        const rotated = `${config.access_token}-rotated`;
        print("account", { config: { ...config, access_token: rotated } });
        process.stderr.write(`refreshed, now using ${rotated}; waiting\n`);
        setTimeout(() => {}, 60000);
        return;
      }
      break;
    case "flood": {
      const chunk = "x".repeat(1 << 20);
      for (let i = 0; i < 100; i++) process.stdout.write(chunk);
      process.stdout.write("\n");
      return;
    }
  }
  const cursor = state.cursor || 0;
  for (let n = cursor + 1; n <= cursor + config.perSync; n++) {
    print("activity", {
      text: `Counter item ${n}`,
      sourceURL: `https://counter.example/items/${n}`,
    });
  }
  const finish = () => print("state", { cursor: cursor + config.perSync, syncs: (state.syncs || 0) + 1 });
  if (config.delayMs > 0) setTimeout(finish, config.delayMs);
  else finish();
}

switch (event) {
  case "spec":
    spec();
    break;
  case "setup":
    setup();
    break;
  case "sync":
    sync();
    break;
  default:
    process.stderr.write(`usage: counter.js spec|setup|sync …\n`);
    process.exit(2);
}
