export { LocalSearch, bundledCorpusDir, type LocalSearchOptions } from './local-search.js';
export { readCorpus, type CorpusDocument, type CorpusProblem } from './corpus.js';
