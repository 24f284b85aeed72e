import { type OutgoingHttpHeaders } from 'node:http';
import CachePolicy from 'http-cache-semantics';
import { responseFreshness } from '../../shared/cache/http/http-semantics';

const shared = { shared: true, defaultTtlSeconds: 60 };
const perUser = { shared: false, defaultTtlSeconds: 60 };
const fresh = (res: OutgoingHttpHeaders, opts = shared, req = {}, status = 200) =>
  responseFreshness(req, status, res, opts);

describe('responseFreshness (RFC 9111 through http-cache-semantics)', () => {
  test('no freshness of its own: the endpoint TTL', () => {
    expect(fresh({})).toBe(60);
    expect(fresh({ 'cache-control': 'public' })).toBe(60);
    expect(fresh({ 'content-type': 'application/json' }, { shared: true, defaultTtlSeconds: 5 })).toBe(5);
  });

  test('max-age, then s-maxage for a shared cache; a per-user (private) cache ignores s-maxage', () => {
    expect(fresh({ 'cache-control': 'max-age=120' })).toBe(120);
    expect(fresh({ 'cache-control': 'max-age=120, s-maxage=5' })).toBe(5);
    expect(fresh({ 'cache-control': 'max-age=120, s-maxage=5' }, perUser)).toBe(120);
    expect(fresh({ 'cache-control': 's-maxage=5' }, perUser)).toBe(60);
  });

  test('Expires when there is no max-age; max-age wins over it; an invalid Expires is already stale', () => {
    const inAMinute = new Date(Date.now() + 61_000).toUTCString();
    expect(fresh({ expires: inAMinute })).toBeGreaterThanOrEqual(59);
    expect(fresh({ expires: inAMinute })).toBeLessThanOrEqual(61);
    expect(fresh({ expires: inAMinute, 'cache-control': 'max-age=5' })).toBe(5);
    expect(fresh({ expires: '0' })).toBe(0);
  });

  test('not stored: no-store, no-cache, max-age=0, Vary: *, Set-Cookie and private in a shared cache', () => {
    for (const cc of ['no-store', 'no-cache', 'no-cache="set-cookie"', 'max-age=0', 'private, max-age=60'])
      expect([cc, fresh({ 'cache-control': cc })]).toEqual([cc, 0]);
    expect(fresh({ vary: '*' })).toBe(0);
    expect(fresh({ 'set-cookie': ['a=1'] })).toBe(0);
  });

  test('private is storable in a per-user cache', () => {
    expect(fresh({ 'cache-control': 'private, max-age=30' }, perUser)).toBe(30);
  });

  test('a shared cache stores an answer to a request with credentials only when the response allows it', () => {
    const auth = { authorization: 'Bearer x' };
    expect(fresh({ 'cache-control': 'max-age=30' }, shared, auth)).toBe(0);
    expect(fresh({ 'cache-control': 'public, max-age=30' }, shared, auth)).toBe(30);
  });

  test('directive names are case-insensitive (RFC 9111 §5.2), which the library alone misses', () => {
    expect(fresh({ 'cache-control': 'No-Store' })).toBe(0);
    expect(fresh({ 'cache-control': 'Max-Age=7' })).toBe(7);
    const libraryAlone = new CachePolicy({ headers: {} }, { headers: { 'cache-control': 'No-Store' } });
    expect(libraryAlone.storable()).toBe(true);
  });

  test('proxy-revalidate: stored while fresh, as RFC 9111 §5.2.2.8 allows (the library alone refuses it)', () => {
    expect(fresh({ 'cache-control': 'max-age=30, proxy-revalidate' })).toBe(30);
    const libraryAlone = new CachePolicy(
      { headers: {} },
      { headers: { 'cache-control': 'max-age=30, proxy-revalidate' } },
      { shared: true },
    );
    expect(libraryAlone.maxAge()).toBe(0);
  });
});
