// Preloaded into a daemon child (node --import): counts the TCP client sockets
// the process opens (diagnostics channel "net.client.socket"), by remote port
// where known, and answers the parent's {type:'connects'} IPC message. For the
// outage tests and bench (issue 21): how many connection attempts a daemon makes
// while its database refuses them. Changes nothing in the daemon.
import diagnostics from 'node:diagnostics_channel';

let total = 0;
diagnostics.subscribe('net.client.socket', () => {
  total += 1;
});
if (process.send) {
  process.on('message', (m) => {
    if (m && m.type === 'connects') process.send({ type: 'connects', total });
  });
  process.channel?.unref();
}
