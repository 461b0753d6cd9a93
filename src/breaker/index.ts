export { createBreaker, backoffFor, describeError } from './breaker.js';
export type { Breaker, BreakerEvent, BreakerOptions, BreakerSettings, BreakerSnapshot, BreakerState, BreakerClock, BreakerTimers, BreakerError } from './breaker.js';
export { logOutages } from './outage-log.js';
export type { OutageLogOptions } from './outage-log.js';
