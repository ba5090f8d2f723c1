'use strict';

// A real SOFA bolt consumer: sofa-rpc-node's RpcClient with the default protocol (sofa-bolt-node),
// connected directly (serverHost, no registry) to 127.0.0.1:P.  All calls share ONE
// TCP connection (sofa-rpc-node keeps one connection per address).
//
// usage: node bolt_consumer.js --port P [--calls N] [--concurrency C] [--payload-bytes B]
//        [--method echo|fail|bizerror|big] [--timeout-ms T] [--deadline-ms D]
//        [--heartbeat [--heartbeat-wait-ms W]] [--report-first-ok] [--verbose]

const {
  sofa, SERVICE, makeLogger, parseConsumerArgs, runCalls, finish, armDeadline, errText,
} = require('./common');
const { clientOptions, checkHeartbeat, connectionsOf } = require('./heartbeat');
const protocol = require('sofa-bolt-node');

async function main() {
  const opts = parseConsumerArgs('bolt_consumer.js');
  armDeadline(opts.deadline_ms, 'bolt_consumer');
  const logger = makeLogger(opts.verbose);
  const client = new sofa.client.RpcClient(Object.assign({ logger }, clientOptions(opts, protocol)));
  client.on('error', err => logger.warn('[bolt_consumer] client error: %s', errText(err)));
  const consumer = client.createConsumer({
    interfaceName: SERVICE,
    version: '1.0',
    serverHost: opts.host + ':' + opts.port,
    responseTimeout: opts.timeout_ms,
  });
  await consumer.ready();
  const summary = await runCalls({
    invoke: (method, arg) => consumer.invoke(method, [ arg ], { responseTimeout: opts.timeout_ms }),
    method: opts.method,
    calls: opts.calls,
    concurrency: opts.concurrency,
    payloadBytes: opts.payload_bytes,
    reportFirstOk: opts.report_first_ok,
    // sofa-bolt-node decodes the RuntimeException appResponse into a JS Error.
    bizErrorMessage: err => (err && typeof err.message === 'string' ? err.message : null),
  });
  summary.protocol = 'bolt';
  summary.connections = connectionsOf(client).length;
  let hbOk = true;
  if (opts.heartbeat) {
    summary.heartbeat = await checkHeartbeat(client, opts);
    hbOk = summary.heartbeat.acked === true;
  }
  finish(summary, hbOk && summary.connections <= 1);
}

main().catch(err => {
  process.stdout.write(JSON.stringify({ ok: 0, errors: [ errText(err) ], mismatched: 0, ms: 0 }) + '\n',
    () => process.exit(1));
});
