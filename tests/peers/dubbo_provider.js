'use strict';

// A real dubbo provider: sofa-rpc-node's RpcServer with the dubbo-remoting protocol
// (Dubbo 2.x framing, hessian2), serving com.mosnpy.test.EchoService version 1.0.0:
//   echo(String) -> String              the argument back
//   fail(String)                        throws: dubbo status 80 (SERVER_ERROR) + message
//   bizError(String) -> exception       status 20 OK, result flag 0 (RESPONSE_WITH_EXCEPTION),
//                                       a java.lang.RuntimeException as the value
//   big(String "<tag>:<n>") -> String   n ASCII bytes starting with "<tag>|"
//
// usage: node dubbo_provider.js --port P [--exit-on-stdin-eof] [--max-seconds S] [--verbose]

const {
  SERVICE, LoopbackRpcServer, makeLogger, parseProviderArgs, echoHandlers, installSignalHandlers,
} = require('./common');
const protocol = require('dubbo-remoting');

async function main() {
  const opts = parseProviderArgs('dubbo_provider.js');
  const logger = makeLogger(opts.verbose);
  const server = new LoopbackRpcServer({
    logger,
    port: opts.port,
    protocol,
  });
  server.on('error', err => logger.error('[dubbo_provider] %s', err && err.stack || err));
  server.addService({
    interfaceName: SERVICE,
    version: '1.0.0',
    group: '',
  }, echoHandlers(msg => {
    // Returned (not thrown): dubbo-remoting writes an object whose $class names an
    // Exception as RESPONSE_WITH_EXCEPTION inside an OK (20) response.
    return {
      $class: 'java.lang.RuntimeException',
      $: {
        detailMessage: msg,
        stackTrace: { $class: '[java.lang.StackTraceElement', $: [] },
      },
    };
  }));
  await server.start();
  installSignalHandlers(() => server.close(), opts);
  process.stdout.write('READY ' + server.publishPort + '\n');
}

main().catch(err => {
  process.stderr.write('dubbo_provider: ' + (err && err.stack || err) + '\n');
  process.exit(1);
});
