/*
 * Secure random bytes for the simulator (lin, mac, win), from the host OS.
 * Native: sim-random.c. The ESP32 build uses the native module's hardware RNG.
 */
export function fillRandom(bytes) @ "xs_lockstep_sim_random_fill";
