/**
 * Globals the XS test host defines (hosts/xs-test/xs_test_host.c). Only the
 * programs under tests/xs that run inside XS may use them.
 */
declare function print(...values: unknown[]): void;

declare const xsTest: {
  /** A full garbage collection. */
  gc(): void;
  heapStats(): {
    /** Bytes of XS chunks (strings, buffers, arrays' storage) in use. */
    chunkBytes: number;
    /** Slots in use after the last collection. */
    slotCount: number;
    /** sizeof(txSlot) on this build: 32 on 64-bit Linux, 16 on ESP32. */
    slotBytes: number;
    peakChunkBytes: number;
    peakSlotCount: number;
  };
  setExitCode(code: number): void;
  /** Start/stop callgrind event collection (no-op outside callgrind). */
  callgrindToggle(): void;
  /** Write a callgrind profile part named `label`. */
  callgrindDump(label: string): void;
  /** The command-line arguments after the script path. */
  readonly args: readonly string[];
};

/** Vendored vector files, bundled by hosts/xs-test/build.ts from tests/vectors/. */
declare module 'xs-test-vectors:*' {
  const file: unknown;
  export default file;
}
