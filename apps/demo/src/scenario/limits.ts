/**
 * The most calls a scenario may make, repeats multiplied out (the built-in library's largest, td-boot-storm,
 * makes 12,352; a million simple calls take the model some tens of seconds); a scenario over it is refused
 * before anything runs. `--max-steps` raises it.
 */
export const DEFAULT_MAX_STEPS = 1_000_000;
