/**
 * Secure random bytes from the host OS for the simulator (sim-random.c):
 * getrandom(2) on Linux, arc4random_buf(3) on macOS, rand_s on Windows.
 * Why native: the SDK's `file` module cannot read /dev/urandom (its read
 * checks fstat's st_size, 0 for a character device: "read past end of
 * file"), and the SDK's `rng` module is RC4 seeded from c_rand().
 * Throws if `bytes` is not a writable Uint8Array or the OS source fails.
 */
export declare function fillRandom(bytes: Uint8Array): void;
