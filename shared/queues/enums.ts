/** Search backends. LOCAL is the bundled full-text index; the others are remote APIs (their own issue). */
export enum SearchProvider {
  LOCAL = 'local',
  BRAVE = 'brave',
  SEARXNG = 'searxng',
}

/** Kinds of search, as the seed names them. */
export enum SearchType {
  WEB = 'web',
  NEWS = 'news',
  ACADEMIC = 'academic',
  IMAGES = 'images',
  VIDEOS = 'videos',
}
