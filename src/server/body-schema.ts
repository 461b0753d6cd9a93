/**
 * Request-body validators, compiled once at module load (STYLE 9). Unknown
 * fields are ignored so a newer Lua script can send more than this version
 * reads; a known field of the wrong type is a 400 that names the field.
 * JSON null counts as absent for optional fields (lua-cjson's cjson.null).
 */
type FieldType = 'string' | 'boolean';

interface FieldSpec {
  type: FieldType;
  required: boolean;
}

export type BodySpec = Record<string, FieldSpec>;

export type Validated<S extends BodySpec> = {
  [K in keyof S as S[K]['required'] extends true ? K : never]: S[K]['type'] extends 'boolean' ? boolean : string;
} & {
  [K in keyof S as S[K]['required'] extends true ? never : K]?: S[K]['type'] extends 'boolean' ? boolean : string;
};

export type Validator<T> = (body: unknown) => { ok: true; value: T } | { ok: false; message: string };

export const req = <T extends FieldType>(type: T) => ({ type, required: true as const });
export const opt = <T extends FieldType>(type: T) => ({ type, required: false as const });

export function compileBody<S extends BodySpec>(spec: S): Validator<Validated<S>> {
  const fields = Object.entries(spec);
  return (body) => {
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      return { ok: false, message: 'the body must be a JSON object' };
    }
    const src = body as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    const problems: string[] = [];
    for (const [name, f] of fields) {
      const v = Object.hasOwn(src, name) ? src[name] : undefined;
      if (v === undefined || v === null) {
        if (f.required) problems.push(`${name}: missing`);
        continue;
      }
      if (typeof v !== f.type) {
        problems.push(`${name}: must be a ${f.type}, got ${Array.isArray(v) ? 'array' : typeof v}`);
        continue;
      }
      out[name] = v;
    }
    if (problems.length > 0) return { ok: false, message: problems.join('; ') };
    return { ok: true, value: out as Validated<S> };
  };
}

export const passdbBody = compileBody({
  user: req('string'),
  password: req('string'),
  // Issue 16: the password's bytes, base64, when they are not valid UTF-8 (lua/mailauth.lua).
  password_b64: opt('string'),
  service: req('string'),
  remote_ip: opt('string'),
  local_ip: opt('string'),
  mech: opt('string'),
  secured: opt('boolean'),
  session: opt('string'),
});

/** mailcow's endpoint answers 400 when username, password or real_rip is missing; its Lua script always sends service. */
export const mailcowBody = compileBody({
  username: req('string'),
  password: req('string'),
  real_rip: req('string'),
  service: req('string'),
});

export const userdbBody = compileBody({
  user: req('string'),
  service: opt('string'),
});
