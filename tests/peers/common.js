'use strict';

// Shared helpers for the sofa-rpc-node based peers (dubbo_*.js, bolt_*.js).
//
// Everything protocol-related is done by the third-party libraries (sofa-rpc-node,
// dubbo-remoting, sofa-bolt-node).  This file only parses the command line, binds the
// server to 127.0.0.1, drives a bounded number of calls and prints one JSON summary.

const net = require('net');
const crypto = require('crypto');

let sofa;
try {
  sofa = require('sofa-rpc-node');
} catch (err) {
  process.stderr.write(
    'cannot load sofa-rpc-node (' + err.message + '): run `npm ci --no-audit --no-fund` in tests/peers\n');
  process.exit(3);
}

// The Java-side names: the captured vectors in shared/vectors use exactly these.
const SERVICE = 'com.mosnpy.test.EchoService';
const ERROR_PREFIX = 'mosnpy-test-error:';
const BIZ_ERROR_PREFIX = 'mosnpy-biz-error:';
// CLI method -> remote method name.
const REMOTE_METHOD = { echo: 'echo', fail: 'fail', bizerror: 'bizError', big: 'big' };
const MAX_CALLS = 1000000;
const MAX_PAYLOAD = 64 * 1024 * 1024;
// With --report-first-ok, printed (alone on a line) once the first call got its expected outcome.
const FIRST_OK_LINE = 'FIRST-OK';

function usage(msg, text) {
  if (!msg) {
    process.stdout.write(text + '\n');
    process.exit(0);
  }
  process.stderr.write('error: ' + msg + '\n' + text + '\n');
  process.exit(2);
}

/**
 * Parses `--name value` / `--flag` arguments.
 * @param {string[]} argv - process.argv.slice(2)
 * @param {Object} spec - name -> { type: 'int'|'str'|'flag', def, choices }
 * @param {string} text - usage text
 * @return {Object} parsed options (dashes in names become underscores)
 */
function parseArgs(argv, spec, text) {
  const out = {};
  for (const [ name, s ] of Object.entries(spec)) {
    out[name.replace(/-/g, '_')] = s.type === 'flag' ? false : s.def;
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') usage(null, text);
    if (!arg.startsWith('--')) usage('unexpected argument ' + JSON.stringify(arg), text);
    let name = arg.slice(2);
    let value;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const s = spec[name];
    if (!s) usage('unknown option --' + name, text);
    const key = name.replace(/-/g, '_');
    if (s.type === 'flag') {
      if (value !== undefined) usage('--' + name + ' takes no value', text);
      out[key] = true;
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) usage('--' + name + ' needs a value', text);
      value = argv[++i];
    }
    if (s.type === 'int') {
      if (!/^\d+$/.test(value)) usage('--' + name + ' needs a non-negative integer', text);
      value = Number(value);
    }
    if (s.choices && !s.choices.includes(value)) {
      usage('--' + name + ' must be one of ' + s.choices.join('|'), text);
    }
    out[key] = value;
  }
  for (const [ name, s ] of Object.entries(spec)) {
    if (s.required && out[name.replace(/-/g, '_')] === undefined) usage('--' + name + ' is required', text);
  }
  return out;
}

/**
 * A logger for the libraries: everything goes to stderr (stdout is kept for READY /
 * the JSON summary); info/debug only with --verbose.
 */
function makeLogger(verbose) {
  const write = (level, args) => {
    const util = require('util');
    process.stderr.write('[' + level + '] ' + util.format(...args) + '\n');
  };
  const noop = () => {};
  return {
    debug: verbose ? (...a) => write('debug', a) : noop,
    info: verbose ? (...a) => write('info', a) : noop,
    warn: (...a) => write('warn', a),
    error: (...a) => write('error', a),
  };
}

/**
 * sofa-rpc-node's RpcServer listens on every interface; this subclass keeps the
 * library's server and only binds it to 127.0.0.1.
 */
class LoopbackRpcServer extends sofa.server.RpcServer {
  _startServer(port) {
    const server = net.createServer();
    server.once('error', err => { this.emit('error', err); });
    server.on('connection', socket => { this._handleSocket(socket); });
    server.listen(port, '127.0.0.1', () => {
      const realPort = server.address().port;
      if (port === this.publishPort && port === 0) {
        this.publishPort = realPort;
      }
      this.logger.info('[RpcServer] server start on 127.0.0.1:%s', realPort);
    });
    return server;
  }
}

/** `big` argument: "<tag>:<n>" -> a string of exactly n ASCII bytes starting with tag. */
function bigString(tag, n) {
  const head = tag + '|';
  if (n <= head.length) return head.slice(0, n);
  return head + 'x'.repeat(n - head.length);
}

function parseBigArg(arg) {
  const idx = String(arg).lastIndexOf(':');
  const n = Number(String(arg).slice(idx + 1));
  if (idx < 0 || !Number.isInteger(n) || n < 0 || n > MAX_PAYLOAD) {
    throw new Error('big(spec): spec must be "<tag>:<n>" with 0 <= n <= ' + MAX_PAYLOAD);
  }
  return bigString(String(arg).slice(0, idx), n);
}

/** The unique request string of call i: at least `payloadBytes` ASCII bytes long. */
function requestString(runTag, i, payloadBytes) {
  const tag = 'call-' + runTag + '-' + i;
  if (payloadBytes <= tag.length) return tag;
  return bigString(tag, payloadBytes);
}

function runTag() {
  return crypto.randomBytes(6).toString('hex');
}

function errText(err) {
  if (err == null) return String(err);
  if (err instanceof Error) return (err.name || 'Error') + ': ' + err.message;
  if (typeof err === 'object') {
    try {
      return JSON.stringify(err).slice(0, 500);
    } catch (_) {
      return String(err);
    }
  }
  return String(err);
}

/**
 * Runs `calls` invocations with `concurrency` in flight and checks each answer.
 *
 * @param {Object} o
 *   - invoke(remoteMethod, argString) -> Promise<result>
 *   - method: echo | fail | bizerror | big
 *   - calls, concurrency, payloadBytes
 *   - reportFirstOk: print FIRST_OK_LINE on stdout when the first call gets its expected outcome
 *   - bizErrorMessage(err) -> string|null: extracts the message of a business error
 * @return {Promise<Object>} summary
 */
async function runCalls(o) {
  const tag = runTag();
  const remote = REMOTE_METHOD[o.method];
  const errors = new Map(); // text -> count
  let ok = 0;
  let mismatched = 0;
  let providerError = null;
  let next = 0;
  const addError = text => { errors.set(text, (errors.get(text) || 0) + 1); };
  const gotOk = () => {
    ok++;
    // --report-first-ok: tell a waiting harness that calls are being answered now.
    if (ok === 1 && o.reportFirstOk) process.stdout.write(FIRST_OK_LINE + '\n');
  };

  async function one(i) {
    const s = requestString(tag, i, o.method === 'big' ? 0 : o.payloadBytes);
    const arg = o.method === 'big' ? s + ':' + o.payloadBytes : s;
    let result;
    try {
      result = await o.invoke(remote, arg);
    } catch (err) {
      if (o.method === 'fail' || o.method === 'bizerror') {
        const prefix = o.method === 'fail' ? ERROR_PREFIX : BIZ_ERROR_PREFIX;
        const msg = o.method === 'fail' ? (err && err.message) : o.bizErrorMessage(err);
        if (typeof msg === 'string' && msg.includes(prefix + s)) {
          gotOk();
          if (providerError === null) providerError = errText(err);
          return;
        }
        if (typeof msg === 'string' && msg.includes(prefix)) {
          mismatched++;
          return;
        }
      }
      addError(errText(err));
      return;
    }
    if (o.method === 'fail' || o.method === 'bizerror') {
      addError('expected an error from ' + remote + '(), got a result: ' + errText(result).slice(0, 200));
      return;
    }
    const expected = o.method === 'big' ? bigString(s, o.payloadBytes) : s;
    if (result === expected) {
      gotOk();
    } else {
      mismatched++;
    }
  }

  async function worker() {
    while (next < o.calls) {
      const i = next++;
      await one(i);
    }
  }

  const start = process.hrtime.bigint();
  const workers = [];
  for (let w = 0; w < Math.min(o.concurrency, o.calls); w++) workers.push(worker());
  await Promise.all(workers);
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  const summary = {
    ok,
    errors: Array.from(errors.entries()).slice(0, 10).map(([ text, n ]) => (n > 1 ? text + ' (x' + n + ')' : text)),
    mismatched,
    ms: Math.round(ms * 10) / 10,
    method: o.method,
    calls: o.calls,
    concurrency: o.concurrency,
    payload_bytes: o.payloadBytes,
  };
  if (providerError !== null) summary.provider_error = providerError.slice(0, 300);
  return summary;
}

/** Bounded wait for `emitter` to emit `event`; resolves with the args or null on timeout. */
function waitEvent(emitter, event, timeoutMs) {
  return new Promise(resolve => {
    const timer = setTimeout(() => {
      emitter.removeListener(event, on);
      resolve(null);
    }, timeoutMs);
    function on(...args) {
      clearTimeout(timer);
      resolve(args);
    }
    emitter.once(event, on);
  });
}

const CONSUMER_SPEC = {
  host: { type: 'str', def: '127.0.0.1' },
  port: { type: 'int', required: true },
  calls: { type: 'int', def: 1 },
  concurrency: { type: 'int', def: 1 },
  'payload-bytes': { type: 'int', def: 0 },
  method: { type: 'str', def: 'echo', choices: Object.keys(REMOTE_METHOD) },
  'timeout-ms': { type: 'int', def: 10000 },
  'deadline-ms': { type: 'int', def: 60000 },
  heartbeat: { type: 'flag' },
  'heartbeat-wait-ms': { type: 'int', def: 10000 },
  'report-first-ok': { type: 'flag' },
  verbose: { type: 'flag' },
};

function consumerUsage(script) {
  return 'usage: node ' + script + ' --port P [--host 127.0.0.1] [--calls N] [--concurrency C]\n' +
    '       [--payload-bytes B] [--method echo|fail|bizerror|big] [--timeout-ms T]\n' +
    '       [--deadline-ms D] [--heartbeat [--heartbeat-wait-ms W]] [--report-first-ok] [--verbose]\n' +
    'Prints one JSON line {"ok", "errors", "mismatched", "ms", ...}; exit 0 only when all calls\n' +
    'got the expected outcome (echo/big: their own string back; fail/bizerror: the provider error).\n' +
    'With --report-first-ok, first prints a ' + FIRST_OK_LINE + ' line once a call got its expected outcome.';
}

function parseConsumerArgs(script) {
  const opts = parseArgs(process.argv.slice(2), CONSUMER_SPEC, consumerUsage(script));
  if (opts.host !== '127.0.0.1') {
    usage('--host must be 127.0.0.1 (loopback only)', consumerUsage(script));
  }
  if (opts.port < 1 || opts.port > 65535) usage('--port out of range', consumerUsage(script));
  if (opts.calls > MAX_CALLS) usage('--calls at most ' + MAX_CALLS, consumerUsage(script));
  if (opts.concurrency < 1) usage('--concurrency at least 1', consumerUsage(script));
  if (opts.payload_bytes > MAX_PAYLOAD) usage('--payload-bytes at most ' + MAX_PAYLOAD, consumerUsage(script));
  if (opts.timeout_ms < 1) usage('--timeout-ms at least 1', consumerUsage(script));
  return opts;
}

const PROVIDER_SPEC = {
  port: { type: 'int', required: true },
  'exit-on-stdin-eof': { type: 'flag' },
  'max-seconds': { type: 'int', def: 3600 },
  verbose: { type: 'flag' },
};

function parseProviderArgs(script) {
  const text = 'usage: node ' + script + ' --port P [--exit-on-stdin-eof] [--max-seconds S] [--verbose]\n' +
    'Listens on 127.0.0.1:P (0 = any free port) and prints "READY <port>" on stdout.\n' +
    'Stops on SIGTERM/SIGINT, after S seconds (default 3600), and with --exit-on-stdin-eof\n' +
    'also when its stdin closes.';
  const opts = parseArgs(process.argv.slice(2), PROVIDER_SPEC, text);
  if (opts.port > 65535) usage('--port out of range', text);
  if (opts.max_seconds < 1 || opts.max_seconds > 86400) usage('--max-seconds must be 1..86400', text);
  return opts;
}

/**
 * Prints the summary line and exits.  A hard deadline guards the whole run.
 */
function finish(summary, extraOk) {
  const good = summary.ok === summary.calls && summary.mismatched === 0 && summary.errors.length === 0 &&
    extraOk !== false;
  process.stdout.write(JSON.stringify(summary) + '\n', () => process.exit(good ? 0 : 1));
}

function armDeadline(ms, what) {
  const t = setTimeout(() => {
    process.stdout.write(JSON.stringify({
      ok: 0, errors: [ what + ': deadline of ' + ms + ' ms passed' ], mismatched: 0, ms,
    }) + '\n', () => process.exit(1));
  }, ms);
  t.unref();
}

/** Handlers of the echo service, shared by the dubbo and the bolt provider. */
function echoHandlers(bizError) {
  return {
    async echo(s) {
      return s;
    },
    async fail(s) {
      // A provider exception: sofa-rpc-node answers with an error status
      // (dubbo: status 80 SERVER_ERROR; bolt: status 2 SERVER_EXCEPTION).
      const err = new Error(ERROR_PREFIX + s);
      err.ignoreLog = true;
      throw err;
    },
    async bizError(s) {
      return bizError(BIZ_ERROR_PREFIX + s);
    },
    async big(spec) {
      return parseBigArg(spec);
    },
  };
}

function installSignalHandlers(close, opts) {
  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    const t = setTimeout(() => process.exit(0), 2000);
    t.unref();
    Promise.resolve().then(close).then(() => process.exit(0), () => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // Never linger: a provider lives at most --max-seconds.
  setTimeout(stop, opts.max_seconds * 1000).unref();
  if (opts.exit_on_stdin_eof) {
    // The harness keeps our stdin open and closes it when done: exit too, never linger.
    process.stdin.on('end', stop);
    process.stdin.on('error', stop);
    process.stdin.resume();
  }
}

module.exports = {
  sofa,
  SERVICE,
  ERROR_PREFIX,
  BIZ_ERROR_PREFIX,
  REMOTE_METHOD,
  FIRST_OK_LINE,
  LoopbackRpcServer,
  makeLogger,
  parseConsumerArgs,
  parseProviderArgs,
  runCalls,
  waitEvent,
  finish,
  armDeadline,
  echoHandlers,
  errText,
  installSignalHandlers,
};
