/**
 * A throwaway PostgreSQL cluster per test file (tools/hub/postgres/cluster.ts)
 * and a fresh database per test. PostgreSQL missing is a failure with the
 * install command in its message, never a skip.
 */
import pg from 'pg';
import { ThrowawayCluster } from '../../tools/hub/postgres/cluster';

let counter = 0;

export async function startCluster(): Promise<ThrowawayCluster> {
  return ThrowawayCluster.start();
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
