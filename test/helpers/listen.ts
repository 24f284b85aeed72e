import { type Server } from 'node:http';
import { type AddressInfo } from 'node:net';

/**
 * Starts a fake backend's server on a free port of 127.0.0.1. `close()` drops every open connection
 * (streams and hanging calls end at once, as if the backend died) and resolves once the server is closed.
 */
export async function listenLocal(server: Server): Promise<{ url: string; close: () => Promise<void> }> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
