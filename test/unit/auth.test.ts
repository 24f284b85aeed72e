import { keyChecker, keyMatcher, presentedKey } from '../../producers/api/auth';
import { AccessControl } from '../../producers/api/access-control';
import { tenantId } from '../../producers/api/tenant-ids';

describe('API key checks', () => {
  it('accepts exactly the configured keys', () => {
    const check = keyChecker(['alpha-key', 'beta-key']);
    expect(check('alpha-key')).toBe(true);
    expect(check('beta-key')).toBe(true);
    expect(check('alpha-ke')).toBe(false);
    expect(check('alpha-key ')).toBe(false);
    expect(check('')).toBe(false);
    expect(keyChecker([])('anything')).toBe(false);
  });

  it('reads Bearer and Basic credentials', () => {
    expect(presentedKey('Bearer abc')).toBe('abc');
    expect(presentedKey('bearer   abc  ')).toBe('abc');
    expect(presentedKey('Basic ' + Buffer.from('user:abc').toString('base64'))).toBe('abc');
    expect(presentedKey('Token abc')).toBeUndefined();
    expect(presentedKey(undefined)).toBeUndefined();
  });

  it('tells which key matched', () => {
    const match = keyMatcher(['alpha-key', 'beta-key']);
    expect(match('beta-key')).toBe(1);
    expect(match('alpha-key')).toBe(0);
    expect(match('gamma-key')).toBe(-1);
  });
});

describe('tenant ids and access options', () => {
  it('derives ids with the secret: another secret or key gives another id, none is a plain hash', () => {
    const id = tenantId('secret-number-one', 'key-a');
    expect(id).toMatch(/^t-[0-9a-f]{24}$/);
    expect(tenantId('secret-number-one', 'key-a')).toBe(id);
    expect(tenantId('secret-number-two', 'key-a')).not.toBe(id);
    expect(tenantId('secret-number-one', 'key-b')).not.toBe(id);
  });

  it('refuses a key that is both a tenant key and an admin key, and tenant keys with no way to a secret', () => {
    expect(() => new AccessControl({ apiKeys: ['k1', 'k2'], adminKeys: ['k2'] })).toThrow(/both a tenant/);
    expect(() => new AccessControl({ apiKeys: ['k1'] }).tenantRoute()).toThrow(/tenantSecret" or "redis"/);
    expect(new AccessControl({ apiKeys: ['k1'], tenantSecret: 'x'.repeat(16) }).adminMode).toBe('off');
    expect(new AccessControl({}).adminMode).toBe('open');
    expect(new AccessControl({ adminKeys: ['a'] }).adminMode).toBe('keys');
  });
});
