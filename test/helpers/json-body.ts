/** A response body as a JSON object, or null when it is not JSON (the tests assert on both). */
export function jsonOrNull(text: string): Record<string, unknown> | null {
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return null;
  }
}
