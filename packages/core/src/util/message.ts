/**
 * Text about a value that came from outside the model (a backend's answer, a thrown exception), for an error or a
 * report. Such a value may throw from a getter, from toString or from a Proxy trap; building the text never does,
 * so a message about a hostile value cannot break the call that reports it.
 */

/** `print(value)`, or a plain description of the value when printing it throws. Never throws. */
export function printable(value: unknown, print: (value: unknown) => string): string {
  try {
    return print(value);
  } catch {
    return typeof value === 'object' ? 'an object that throws when read' : `a ${typeof value} that throws when read`;
  }
}

/**
 * The message of a thrown value: an Error's message, else the value as a string. Never throws (a hostile backend,
 * consumer or listener may throw a Proxy, or an object whose `message` getter or toString throws). The door's errors,
 * Host.reportObserverError and the event stream's listener errors all use it.
 */
export const messageOf = (error: unknown): string =>
  printable(error, (e) => (e instanceof Error ? e.message : String(e)));
