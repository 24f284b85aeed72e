import { keyChecker, presentedKey } from '../../producers/api/auth';

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
});
