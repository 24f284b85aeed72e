import { type Cluster, type Redis } from 'ioredis';

/*
 * Redis Cluster key slots, computed as the cluster does (CRC16/XMODEM of the key's hash tag, modulo
 * 16384), so cell0 can choose tags that land where it wants them (see shared/queues/shards.ts).
 */

/** Slots of a Redis Cluster. */
export const CLUSTER_SLOTS = 16384;

const TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let j = 0; j < 8; j++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

/** CRC16/XMODEM of `bytes`, continuing from `crc` (0 to start): the checksum Redis Cluster uses. */
export function crc16(bytes: Uint8Array, crc = 0): number {
  let c = crc;
  for (const b of bytes) c = crc16Step(c, b);
  return c;
}

/** The CRC16 `crc` continued by one byte. */
export function crc16Step(crc: number, byte: number): number {
  return ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ byte) & 0xff]!;
}

/**
 * The cluster slot of `key`: of its hash tag (the text between the first `{` and the next `}`) when that
 * is not empty, else of the whole key.
 */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) key = key.slice(open + 1, close);
  }
  return crc16(Buffer.from(key)) % CLUSTER_SLOTS;
}

/**
 * The connection of cluster `conn` to the master that serves `key`'s slot, and that master's address
 * ("host:port", as the slot map names it): the node connection the cluster sends `key`'s commands on.
 * Undefined while the slot map does not name a master for the slot or its connection is not made.
 */
export function masterFor(conn: Cluster, key: string): { node: Redis; address: string } | undefined {
  const address = conn.slots[keySlot(key)]?.[0];
  if (address === undefined) return undefined;
  const node = conn.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === address);
  return node ? { node, address } : undefined;
}
