import { describe, expect, it } from 'vitest';
import { createHost, describeBackendProblems, swProtected, type ArchBackend } from '../index.js';

describe('describeBackendProblems: rules', () => {
  it('a backend without rules is a v1 backend (the member is optional)', () => {
    const { rules: _rules, ...withoutRules } = swProtected;
    expect(describeBackendProblems(withoutRules)).toEqual([]);
  });

  it('well-formed rules pass, and an empty list is allowed', () => {
    expect(describeBackendProblems(swProtected)).toEqual([]);
    expect(describeBackendProblems({ ...swProtected, rules: [] })).toEqual([]);
  });

  it('names every malformed rule and field', () => {
    const rules = [
      { topic: 'contents', rule: 'keep', source: '[T1a]' },
      null,
      { topic: ' ', rule: 'x' },
      { topic: 'a', rule: 7, source: 'b' },
    ];
    expect(describeBackendProblems({ ...swProtected, rules })).toEqual([
      'rules[1] is not an object',
      'rules[2].topic is not a non-empty string',
      'rules[2].source is not a non-empty string',
      'rules[3].rule is not a non-empty string',
    ]);
    expect(describeBackendProblems({ ...swProtected, rules: 'keep' })).toEqual(['rules is present but not an array']);
  });

  it('names malformed evidence: not a list, or an entry without a tag or a quote', () => {
    const rules = [
      { topic: 'contents', rule: 'keep', source: '[T1a]', evidence: [{ tag: 'T1a', quote: 'unmap on truncation' }] },
      { topic: 'contents', rule: 'keep', source: '[T1a]', evidence: 'T1a' },
      { topic: 'contents', rule: 'keep', source: '[T1a]', evidence: [{ tag: 'T1a' }, null] },
    ];
    expect(describeBackendProblems({ ...swProtected, rules })).toEqual([
      'rules[1].evidence is present but not an array',
      'rules[2].evidence[0].quote is not a non-empty string',
      'rules[2].evidence[1].tag is not a non-empty string',
      'rules[2].evidence[1].quote is not a non-empty string',
    ]);
  });

  it('createHost refuses a backend with malformed rules (EINVAL naming the problem)', () => {
    // No world: the call under test is createHost.
    const broken = {
      ...swProtected,
      id: 'broken',
      rules: [{ topic: 'contents', rule: 'keep' }],
    } as unknown as ArchBackend;
    expect(() => createHost({ backend: broken })).toThrow(/rules\[0\]\.source/);
  });
});

describe('swProtected rules', () => {
  it('every rule has a topic, a rule and a source, and the list is frozen', () => {
    expect(swProtected.rules?.length).toBeGreaterThan(0);
    for (const rule of swProtected.rules ?? []) {
      expect(rule.topic.trim()).not.toBe('');
      expect(rule.rule.trim()).not.toBe('');
      expect(rule.source.trim()).not.toBe('');
      expect(Object.isFrozen(rule)).toBe(true);
    }
    expect(Object.isFrozen(swProtected.rules)).toBe(true);
  });

  it('the rules say what the hooks do: tolerate, allow, keep', () => {
    const topic = (name: string) => swProtected.rules?.find((rule) => rule.topic === name)?.rule ?? '';
    expect(swProtected.conversionPolicy).toBeTypeOf('function');
    expect(topic('conversion policy')).toMatch(/'tolerate'/);
    expect(topic('device access to private')).toMatch(/^Allowed/);
    expect(topic('host access to private')).toMatch(/^Allowed/);
    expect(topic('contents')).toMatch(/'keep'/);
    expect(swProtected.contentsOnConversion({ to: 'shared' })).toBe('keep');
  });
});
