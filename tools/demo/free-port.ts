/** A TCP port on 127.0.0.1 that is free now: `preferred` if it is, else one the kernel picks. */
import { createServer } from 'node:net';

export async function freePort(preferred: number): Promise<number> {
  const attempt = (port: number) =>
    new Promise<number | undefined>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(undefined));
      server.listen({ host: '127.0.0.1', port }, () => {
        const address = server.address();
        const chosen = typeof address === 'object' && address !== null ? address.port : undefined;
        server.close(() => resolve(chosen));
      });
    });
  return (await attempt(preferred)) ?? ((await attempt(0)) as number);
}
