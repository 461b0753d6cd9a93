// The yardstick: node:http answering every request with a fixed 200 JSON body,
// after reading the request body (as any real endpoint must).
import http from 'node:http';

const body = Buffer.from(JSON.stringify({ result: 'ok', user: 'user@bench.test' }));
const server = http.createServer((req, res) => {
  req.on('data', () => {});
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  });
});
server.keepAliveTimeout = 65_000;
server.listen(Number(process.argv[2]), '127.0.0.1');
process.on("SIGTERM", () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
