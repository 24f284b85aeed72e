export {
  SearxngSearch,
  SEARXNG_CATEGORIES,
  searxngHttpError,
  type SearxngSearchOptions,
} from './searxng-search.js';
