/**
 * The scenario format, as zod schemas built from the call table. The same schemas validate files (with one-line
 * errors naming the step and field, see load.ts) and emit the JSON Schema published as scenario.schema.json.
 */
import { ERRNO_VALUES } from '@gmemlab/core';
import { DESIGNS } from '../run/designs.js';
import { z } from 'zod';
import { CALLS, type ArgSpec } from './calls.js';
import { ExprError, parseExpr } from './expr.js';

/** The access fault kinds of @gmemlab/core's AccessFault.fault. */
export const FAULT_KINDS = [
  'sigbus',
  'sigsegv',
  'iommu-fault',
  'contained',
  'poison',
  'machine-check',
  'efault',
  'einval',
  'mmio',
  'retry',
  'memory-fault',
] as const;
/** The invariant kinds of @gmemlab/core's Violation.kind. */
export const VIOLATION_KINDS = [
  'stale-iopte',
  'stale-spte',
  'stale-host-pte',
  'unsafe-iopte',
  'attributes',
  'hardware-state',
] as const;
/** Owners of a frame a stale access reached (@gmemlab/core's FrameOwner.kind). */
export const OWNER_KINDS = ['free', 'guest_memfd', 'shmem', 'anonymous', 'pinned'] as const;
export const ERRNOS = Object.keys(ERRNO_VALUES) as [string, ...string[]];

/** Why a string is not an expression. */
function exprProblem(text: string): string {
  try {
    parseExpr(text);
    return 'an integer is needed here';
  } catch (error) {
    return error instanceof ExprError ? error.message : String(error);
  }
}

const expression = z.string().check((ctx) => {
  try {
    parseExpr(ctx.value);
  } catch (error) {
    ctx.issues.push({
      code: 'custom',
      message: error instanceof ExprError ? error.message : String(error),
      input: ctx.value,
    });
  }
});

/** An integer, or an expression over sizes, constants, lets and numeric handles ('2MiB', 'iova + 4KiB'). */
export const Num = z
  .union([z.number().int(), expression], {
    error: (i) =>
      typeof i.input === 'string'
        ? exprProblem(i.input)
        : typeof i.input === 'number' && !Number.isSafeInteger(i.input) && Number.isInteger(i.input)
          ? `a number above 2^53 - 1 is not exact as a YAML or JSON number: quote it ('0x7fffffffffffffff') to have it read exactly`
          : 'expected an integer or an expression such as 2MiB or GPA + 4KiB',
  })
  .meta({
    description:
      "an integer or an expression: '2MiB', '0x1000', 'GPA + i * 4KiB', 'FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE'",
  });
const Flags = z
  .union([Num, z.array(Num)], { error: 'expected a number, an expression, or a list of them' })
  .meta({ description: 'a number, an expression, or a list of them OR-ed together' });
const Name = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a name: letters, digits and _');

function argSchema(spec: ArgSpec): z.ZodType {
  const base = (() => {
    switch (spec.type) {
      case 'num':
        return Num;
      case 'flags':
        return Flags;
      case 'handle':
        return Name;
      case 'bool':
        return z.boolean();
      case 'enum':
        return z.enum(spec.values as [string, ...string[]]);
      case 'string':
        return z.string().max(64);
      case 'byte':
        return z.union([z.number().int().min(0).max(255), expression]);
    }
  })().meta({ description: spec.doc });
  return spec.optional ? base.optional() : base;
}

const Selector = {
  arch: z
    .union([z.string(), z.array(z.string())])
    .optional()
    .meta({
      description:
        "backend ids this case applies to: 'tdx' also matches its variants ('tdx:connect'); 'tdx:connect' only that one",
    }),
  contract: z
    .union([
      z.enum(DESIGNS as unknown as [string, ...string[]]),
      z.array(z.enum(DESIGNS as unknown as [string, ...string[]])),
    ])
    .optional(),
};

export const OutcomeFields = {
  ok: z.literal(true).optional().meta({ description: 'the call returned (an access completed)' }),
  errno: z.enum(ERRNOS).optional().meta({ description: 'the call failed with this errno' }),
  errorOffset: Num.optional().meta({
    description: 'with errno: the offset the kernel reports (KVM_SET_MEMORY_ATTRIBUTES2 error_offset)',
  }),
  fault: z.enum(FAULT_KINDS).optional().meta({ description: 'the access faulted this way' }),
  fatal: z.boolean().optional().meta({ description: 'with fault: whether it takes the host down' }),
  reaches: z
    .union([z.enum(OWNER_KINDS), z.array(z.enum(OWNER_KINDS))])
    .optional()
    .meta({ description: 'a stale access reached frames now owned by these' }),
  bytes: z
    .union([z.number().int().min(0).max(255), expression])
    .optional()
    .meta({ description: 'every byte read equals this' }),
  hostDown: z
    .literal(true)
    .optional()
    .meta({ description: 'the host had crashed before this step: the call was refused' }),
  violations: z
    .array(z.enum(VIOLATION_KINDS))
    .optional()
    .meta({ description: 'the invariant kinds newly broken by this step (absent: none)' }),
};
const OutcomeObject = z.strictObject(OutcomeFields);
const Shorthand = z
  .union([z.enum(['ok', 'host-down']), z.enum(ERRNOS), z.enum(FAULT_KINDS)])
  .meta({ description: "'ok', 'host-down', an errno name or a fault kind" });
const Case = z.strictObject({ ...Selector, ...OutcomeFields });
export const Expect = z.union([Shorthand, OutcomeObject, z.array(z.union([Shorthand, Case]))]).meta({
  description:
    'what the step does: one outcome, or a list of cases (first match wins) that may select by arch and contract',
});

const common = {
  on: Name.optional().meta({
    description:
      'the handle the call is made on (default: the handle named like the receiver, or the only one of its kind)',
  }),
  as: Name.optional().meta({ description: 'name the result for later steps' }),
  note: z.string().optional().meta({ description: 'shown beside the step in the timeline' }),
  expect: Expect.optional(),
};

export const callSchemas: Record<string, z.ZodObject> = Object.fromEntries(
  Object.entries(CALLS).map(([name, spec]) => [
    name,
    z
      .strictObject({
        call: z.literal(name),
        ...common,
        ...Object.fromEntries(Object.entries(spec.args).map(([arg, a]) => [arg, argSchema(a)])),
      })
      .meta({ description: `${spec.kernel}: ${spec.doc}` }),
  ]),
);

const CallStep = z.discriminatedUnion('call', Object.values(callSchemas) as unknown as [z.ZodObject, ...z.ZodObject[]]);

export const RepeatStep = z.strictObject({
  repeat: Num.meta({ description: 'how many times' }),
  as: Name.optional().meta({ description: "the counter's name, 0-based (default i)" }),
  note: z.string().optional(),
  get steps() {
    return z.array(Step).min(1);
  },
});

export const Step: z.ZodType = z.union([CallStep, RepeatStep]);

export const HostSchema = z.strictObject({
  conversion: z.enum(['in-place', 'separate']).optional().meta({
    description:
      "'separate': today's path (KVM_SET_MEMORY_ATTRIBUTES on the VM fd, shared memory at userspace_addr); runs in the 'today' column",
  }),
  inPlaceConversion: z.boolean().optional(),
  registerUserRanges: z.boolean().optional(),
  gmemOnlyMemslots: z.boolean().optional(),
});

export const ScenarioHeaderFields = {
  $schema: z.string().optional(),
  title: z.string().min(1).meta({ description: 'one line' }),
  situation: z.string().min(1).meta({ description: 'one paragraph: the real situation this models' }),
  source: z.union([z.string(), z.array(z.string())]).meta({
    description:
      'where the situation and the expected outcomes come from (thread, kernel-contract §, arch-behaviour §)',
  }),
  contracts: z
    .array(z.enum(DESIGNS as unknown as [string, ...string[]]))
    .optional()
    .meta({ description: 'the contracts this scenario is meant for (default: all)' }),
  host: HostSchema.optional(),
  let: z.record(Name, Num).optional().meta({ description: 'named numbers for the steps' }),
};

export const ScenarioSchema = z
  .strictObject({ ...ScenarioHeaderFields, steps: z.array(Step).min(1) })
  .meta({ title: 'gmemlab scenario' });

export function scenarioJsonSchema(): unknown {
  return z.toJSONSchema(ScenarioSchema, { target: 'draft-2020-12', reused: 'ref' });
}
