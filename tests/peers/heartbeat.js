'use strict';

// Heartbeats as sofa-rpc-node sends them (both for bolt and for dubbo):
//
// - the client's RpcConnection#heartbeat() writes a heartbeat frame (bolt: cmdcode 0;
//   dubbo: an event request with a null body) when the connection made no call for more
//   than connectionOpts.maxIdleTime (default 30000 ms);
// - it is called from the AddressGroup's health-counter tick, every
//   DynamicConfig.metric.bucketSizeInMs (default 10000 ms);
// - the server (sofa-rpc-node RpcServer) answers each one with a heartbeat ack and
//   closes a connection idle for more than maxIdleTime (default 90000 ms);
// - the client sends and forgets: it does not wait for the ack ("只发就好，不用等 ack 了").
//   Its decoder still decodes the ack and emits 'heartbeat_ack', which is what we watch.
//
// With --heartbeat the consumers shrink both periods (idle 1000 ms, tick 250 ms) so the
// library itself sends one within ~1.5 s of the last call, and wait for the ack.

const { sofa } = require('./common');

const HB_IDLE_MS = 1000;
const HB_TICK_MS = 250;

/** RpcClient options; with opts.heartbeat, short idle/tick periods (see above). */
function clientOptions(opts, protocol) {
  if (opts.heartbeat) {
    const DynamicConfig = require('sofa-rpc-node/lib/client/dynamic_config');
    DynamicConfig.instance.metric.bucketSizeInMs = HB_TICK_MS;
  }
  // A test tool: every call must reach the wire, so the client-side circuit breaker
  // (which would fail calls locally after many provider errors) is forced closed.
  const DynamicConfig = require('sofa-rpc-node/lib/client/dynamic_config');
  DynamicConfig.instance.circuitBreaker.forceClosed = true;
  const connectionOpts = {
    protocol,
    noDelay: true,
    connectTimeout: 3000,
  };
  if (opts.heartbeat) connectionOpts.maxIdleTime = HB_IDLE_MS;
  return { protocol, connectionOpts };
}

function connectionsOf(client) {
  return Array.from(client.connectionManager.connections.values());
}

/**
 * Waits (bounded) for the library to send a heartbeat on the idle connection and for
 * the provider's ack.
 */
async function checkHeartbeat(client, opts) {
  const conns = connectionsOf(client);
  if (conns.length !== 1) {
    return { sent: 0, acked: false, error: 'expected 1 connection, have ' + conns.length };
  }
  const conn = conns[0];
  const start = Date.now();
  const result = { sent: 0, acked: false, idle_ms: HB_IDLE_MS, tick_ms: HB_TICK_MS };
  return await new Promise(resolve => {
    const encoder = conn._encoder;
    const origWrite = encoder.writeHeartbeat;
    let sentAt = null;
    encoder.writeHeartbeat = function(id, ...rest) {
      result.sent++;
      if (result.id === undefined) result.id = id;
      if (sentAt === null) sentAt = Date.now();
      return origWrite.call(this, id, ...rest);
    };
    const timer = setTimeout(() => done('no heartbeat ack within ' + opts.heartbeat_wait_ms + ' ms'),
      opts.heartbeat_wait_ms);
    const onAck = ack => {
      if (result.id !== undefined && ack.packetId !== result.id) return;
      result.acked = true;
      result.ack_id = ack.packetId;
      done(null);
    };
    conn._decoder.on('heartbeat_ack', onAck);
    function done(err) {
      clearTimeout(timer);
      conn._decoder.removeListener('heartbeat_ack', onAck);
      encoder.writeHeartbeat = origWrite;
      result.sent_after_ms = sentAt === null ? null : sentAt - start;
      result.rtt_ms = sentAt === null ? null : Date.now() - sentAt;
      if (err) result.error = err;
      resolve(result);
    }
  });
}

module.exports = { clientOptions, checkHeartbeat, connectionsOf, sofa };
