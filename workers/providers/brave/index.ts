export {
  BraveSearch,
  BRAVE_MAX_PAGE_INDEX,
  braveEndpoint,
  braveHttpError,
  braveLocale,
  braveRateLimitResetSeconds,
  planBravePages,
  type BravePagePlan,
  type BraveSafeSearch,
  type BraveSearchOptions,
} from './brave-search.js';
