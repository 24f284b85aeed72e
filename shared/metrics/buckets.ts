/** Job durations from 10 ms to 5 min: LLM work ranges from a cached embedding to a long generation. */
export const JOB_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300];
/** HTTP request durations: most answers are fast, a waited-for inference can take minutes. */
export const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8, 1, 2.5, 5, 10, 30, 60, 120];
