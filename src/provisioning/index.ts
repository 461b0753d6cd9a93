/**
 * Mailbox-from-template provisioning and the admin operations around it. Every
 * function takes a Queryable: pass a transaction (db.transaction(tx => …)).
 * Expected negatives come back as `{ refused, message }`; nothing was written then.
 */
export { provisionMailbox, provisionSession, changeMailbox, effectiveQuota } from './mailbox.js';
export type {
  ProvisionInput,
  ProvisionOptions,
  ProvisionSession,
  ProvisionResult,
  Provisioned,
  ProvisionRefusal,
  ProvisionRefusalReason,
  TemplateInput,
  MailboxChange,
  MailboxChangeRefusalReason,
} from './mailbox.js';
export { setMailboxPassword, setMailboxAuthsource, removeMailbox } from './credentials.js';
export type { MailboxRefusal } from './credentials.js';
export { createDomain, editDomain, removeDomain, domainContents, checkDomainLimits, DEFAULT_DOMAIN_LIMITS } from './domain.js';
export type { DomainLimits, DomainPatch, DomainRefusal, NewDomainInput } from './domain.js';
export {
  addAppPassword,
  listMailboxAppPasswords,
  removeAppPassword,
  generateAppPassword,
  parseProtocols,
  APP_PASSWORD_ALPHABET,
  APP_PASSWORD_LENGTH,
} from './app-password.js';
export type { AppPasswordInfo, AppPasswordRefusal } from './app-password.js';
export { createTemplate, editTemplate, removeTemplate, templateReferences, DEFAULT_TEMPLATE_NAME } from './templates.js';
export type { TemplateChange, TemplateRefusal } from './templates.js';
export {
  validateTemplateAttributes,
  parseTemplateSetting,
  coerceTemplateValue,
  isTemplateKey,
  TEMPLATE_KEYS,
  TEMPLATE_FLAG_KEYS,
  TEMPLATE_ACL_KEYS,
  QUARANTINE_NOTIFICATION,
  QUARANTINE_CATEGORY,
  RATE_LIMIT_FRAMES,
  TAGGED_MAIL_HANDLER,
} from './template-attributes.js';
export { templateAttributeHash, phpJsonEncode, phpJsonString } from './attribute-hash.js';
export { normalizeAddress, normalizeDomain } from './address.js';
export type { Address } from './address.js';
export { isRefusal, MIB } from './refusal.js';
export { inTransaction } from './transaction.js';
export type { Refusal } from './refusal.js';
