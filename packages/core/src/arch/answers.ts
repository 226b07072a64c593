/**
 * What a registry consumer answers is checked where it is asked, never trusted: a conversionResponse outside
 * the four responses, or one that throws, fails the conversion with EIO naming the consumer and the hook, before
 * anything changed (in the kernel a callback breaking its contract is a WARN and -EIO, not a user error). A
 * backend's answers go through the door (door.ts), with the same messages.
 */
import { GmemError, fail } from '../errors.js';
import type { ConversionRequest, MappingConsumer } from '../registry/registry.js';
import type { ConsumerResponse } from './backend.js';
import { describeAnswer } from './door.js';

const RESPONSES: readonly ConsumerResponse[] = ['revoke', 'refuse', 'tolerate', 'split'];

/** A registry consumer's conversionResponse answer. */
export function checkConsumerResponse(op: string, consumer: MappingConsumer, call: () => unknown): ConsumerResponse {
  const who = `consumer ${consumer.label}`;
  let answer: unknown;
  try {
    answer = call();
  } catch (error) {
    if (GmemError.isInstance(error)) throw error;
    return fail(
      'EIO',
      op,
      `${who}: conversionResponse threw: ${error instanceof Error ? error.message : String(error)}`,
      { hint: `fix ${who}'s conversionResponse` },
    );
  }
  if (!RESPONSES.includes(answer as ConsumerResponse)) {
    fail(
      'EIO',
      op,
      `${who}: conversionResponse returned ${describeAnswer(answer)}, expected one of ${RESPONSES.join(', ')}`,
      { hint: `fix ${who}'s conversionResponse` },
    );
  }
  return answer as ConsumerResponse;
}

/** consumer.conversionResponse(request), checked as checkConsumerResponse checks it, without a closure per ask. */
export function askConsumer(op: string, consumer: MappingConsumer, request: ConversionRequest): ConsumerResponse {
  let answer: unknown;
  try {
    answer = consumer.conversionResponse!(request);
  } catch (error) {
    return checkConsumerResponse(op, consumer, () => {
      throw error;
    });
  }
  // The four responses compared directly (the hot path: one answer per consumer per conversion).
  return answer === 'tolerate' || answer === 'revoke' || answer === 'split' || answer === 'refuse'
    ? answer
    : checkConsumerResponse(op, consumer, () => answer);
}
