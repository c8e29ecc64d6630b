/**
 * A throwaway PostgreSQL cluster per test file (tools/hub/postgres/cluster.ts)
 * and a fresh database per test. PostgreSQL missing is a failure with the
 * install command in its message, never a skip.
 */
import { connect } from 'node:net';
import pg from 'pg';
import { ThrowawayCluster } from '../../tools/hub/postgres/cluster';

let counter = 0;

export async function startCluster(): Promise<ThrowawayCluster> {
  return ThrowawayCluster.start();
}

/**
 * The file's cluster, started before its tests and stopped after them, and
 * `afterTest(close)`: closers run after each test, last registered first
 * (devices before the hubs they dial).
 */
export function clusterPerFile(): { cluster: () => ThrowawayCluster; afterTest: (close: () => unknown) => void } {
  let cluster: ThrowawayCluster | undefined;
  const closers: (() => unknown)[] = [];
  beforeAll(async () => {
    cluster = await startCluster();
  }, 60_000);
  afterAll(() => cluster?.stop());
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });
  return {
    cluster: () => {
      if (cluster === undefined) throw new Error('the cluster is started in beforeAll');
      return cluster;
    },
    afterTest: (close) => closers.push(close),
  };
}

/** A new empty database in the cluster; returns its URL. */
export async function freshDatabase(cluster: ThrowawayCluster): Promise<string> {
  const name = `t${process.pid}_${++counter}`;
  const client = new pg.Client({ connectionString: cluster.url });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(cluster.url);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Runs SQL as the cluster's superuser (fault injection: pg_terminate_backend, ...). */
export async function sql(url: string, text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}

/**
 * Sends a forged HELLO naming `deviceId` (header right: this session, key id 1; tag wrong) to a hub on `port`;
 * resolves when the hub answered it (closed the connection, or — an enrolled device — sent NO_KEY, which ends it here).
 */
export function forgedHello(port: number, deviceId: string): Promise<void> {
  return new Promise<void>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let challenge = Buffer.alloc(0);
    let sent = false;
    socket.on('data', (chunk: Buffer) => {
      if (sent) {
        socket.destroy(); // the hub's answer to the HELLO
        resolve();
        return;
      }
      challenge = Buffer.concat([challenge, chunk]);
      if (challenge.length < 38) return;
      const frame = Buffer.alloc(36 + 64);
      frame[0] = 1;
      frame[1] = 0x02;
      Buffer.from(deviceId, 'hex').copy(frame, 4);
      frame.writeUInt32BE(1, 12);
      challenge.subarray(2 + 20, 2 + 36).copy(frame, 20);
      const prefix = Buffer.alloc(2);
      prefix.writeUInt16BE(frame.length);
      socket.write(Buffer.concat([prefix, frame]));
      sent = true;
    });
    socket.on('close', () => resolve());
    socket.on('error', () => {});
  });
}
