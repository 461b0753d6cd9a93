/** The few parts of oidc-provider@9 the test OP uses (the package ships no types). */
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export interface GrantContext {
    oidc: {
      params: Record<string, string | undefined>;
      client: { clientId: string };
    };
    body: unknown;
  }

  export interface Account {
    accountId: string;
    claims(use: string, scope: string): Promise<Record<string, unknown>>;
  }

  interface GrantInstance {
    addOIDCScope(scope: string): void;
    addOIDCClaims(claims: string[]): void;
    addResourceScope(resource: string, scope: string): void;
    save(): Promise<string>;
  }

  interface AccessTokenInstance {
    expiration: number;
    resourceServer?: unknown;
    save(): Promise<string>;
  }

  export class Provider {
    constructor(issuer: string, configuration: Record<string, unknown>);
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    registerGrantType(name: string, handler: (ctx: GrantContext) => Promise<void>, params?: string[]): void;
    Grant: (new (init: { accountId: string; clientId: string }) => GrantInstance) & { find(id: string): Promise<GrantInstance | undefined> };
    interactionDetails(req: IncomingMessage, res: ServerResponse): Promise<{
      uid: string;
      prompt: { name: string; details: Record<string, unknown> };
      params: Record<string, unknown>;
      session?: { accountId?: string };
      grantId?: string;
    }>;
    interactionFinished(req: IncomingMessage, res: ServerResponse, result: Record<string, unknown>, opts?: { mergeWithLastSubmission?: boolean }): Promise<void>;
    ResourceServer: new (identifier: string, info: Record<string, unknown>) => unknown;
    AccessToken: new (init: { accountId: string; client: unknown; grantId: string; gty: string; scope: string }) => AccessTokenInstance;
  }

  export const errors: {
    InvalidGrant: new (description?: string) => Error;
    InvalidTarget: new (description?: string) => Error;
  };

  export default Provider;
}
