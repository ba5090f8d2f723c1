'use strict';

// A real SOFA bolt provider: sofa-rpc-node's RpcServer with its default protocol
// (sofa-bolt-node: Bolt v1, hessian2 SofaRequest/SofaResponse), serving
// com.mosnpy.test.EchoService:1.0:
//   echo(String) -> String              the argument back
//   fail(String)                        throws: bolt status 2 (SERVER_EXCEPTION) with a
//                                       com.alipay.remoting.rpc.exception.RpcServerException
//   bizError(String) -> exception       status 0 (SUCCESS); the SofaResponse's appResponse
//                                       is a java.lang.RuntimeException
//   big(String "<tag>:<n>") -> String   n ASCII bytes starting with "<tag>|"
//
// usage: node bolt_provider.js --port P [--exit-on-stdin-eof] [--max-seconds S] [--verbose]

const {
  SERVICE, LoopbackRpcServer, makeLogger, parseProviderArgs, echoHandlers, installSignalHandlers,
} = require('./common');

async function main() {
  const opts = parseProviderArgs('bolt_provider.js');
  const logger = makeLogger(opts.verbose);
  const server = new LoopbackRpcServer({ logger, port: opts.port });
  server.on('error', err => logger.error('[bolt_provider] %s', err && err.stack || err));
  server.addService({ interfaceName: SERVICE, version: '1.0' }, echoHandlers(msg => ({
    $class: 'java.lang.RuntimeException',
    $: {
      detailMessage: msg,
      stackTrace: { $class: '[java.lang.StackTraceElement', $: [] },
    },
  })));
  await server.start();
  installSignalHandlers(() => server.close(), opts);
  process.stdout.write('READY ' + server.publishPort + '\n');
}

main().catch(err => {
  process.stderr.write('bolt_provider: ' + (err && err.stack || err) + '\n');
  process.exit(1);
});
