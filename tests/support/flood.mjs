// A connection flood for tests/flood.test.ts, run as a child process so its
// sockets do not count against the hub's file descriptors. Loopback only.
//
//   node flood.mjs <host> <port> <localAddress> idle <count>
//     opens <count> idle connections (never sends a byte), reports each
//     close; stops when all are closed or after 60 s.
//   node flood.mjs <host> <port> <localAddress> rate <perSecond> <durationMs>
//     opens connections at <perSecond> for <durationMs>, never sends, keeps
//     each until the peer closes it (at most 12,000 open at once).
//
// Reports JSON lines on stdout: {"connected":n,"closed":n,"errors":n,"open":n,"attempted":n,"maxLifetimeMs":ms,"t":ms}
// every 250 ms and once more at the end ({"done":true,...}).
import { connect } from 'node:net';

const [host, portText, localAddress, mode, a, b] = process.argv.slice(2);
const port = Number(portText);
const MAX_OPEN = 12_000;
// Explicit source ports, cycled: with thousands of sockets bound to one
// address, letting the kernel pick a port at bind time (port 0) scans the
// bound ones and stalls this process for seconds.
const FIRST_PORT = 10_000;
const PORTS = 20_000;
const started = Date.now();
const count = { connected: 0, closed: 0, errors: 0, open: 0, attempted: 0, maxLifetimeMs: 0 };

function report(done = false) {
  process.stdout.write(`${JSON.stringify({ done, ...count, t: Date.now() - started })}\n`);
}

function one() {
  count.attempted++;
  count.open++;
  const socket = connect({ host, port, localAddress, localPort: FIRST_PORT + (count.attempted % PORTS) });
  let connectedAt = 0;
  socket.on('connect', () => {
    count.connected++;
    connectedAt = Date.now();
  });
  socket.on('data', () => {});
  socket.on('error', () => count.errors++);
  socket.on('close', () => {
    count.open--;
    count.closed++;
    if (connectedAt > 0) count.maxLifetimeMs = Math.max(count.maxLifetimeMs, Date.now() - connectedAt);
  });
}

const reporter = setInterval(report, 250);
const hardStop = setTimeout(finish, 60_000);

function finish() {
  clearInterval(reporter);
  clearTimeout(hardStop);
  report(true);
  process.exit(0);
}

if (mode === 'idle') {
  const sockets = Number(a);
  for (let i = 0; i < sockets; i++) one();
  const check = setInterval(() => {
    if (count.closed >= sockets) {
      clearInterval(check);
      finish();
    }
  }, 20);
} else {
  const perSecond = Number(a);
  const durationMs = Number(b);
  const TICK_MS = 10;
  const timer = setInterval(() => {
    const due = Math.floor(((Date.now() - started) * perSecond) / 1000) - count.attempted;
    for (let i = 0; i < due && count.open < MAX_OPEN; i++) one();
    if (Date.now() - started >= durationMs) {
      clearInterval(timer);
      finish();
    }
  }, TICK_MS);
}
process.stdin.on('data', () => finish());
process.stdin.on('end', () => finish());
