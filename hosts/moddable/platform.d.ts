/**
 * The per-target platform module. Not a source file: the manifest maps the
 * module name `hosts/moddable/platform` to ./platform-esp32.ts (esp32) or
 * ./platform-sim.ts (lin, mac, win); both export `platform`, and
 * platform-check.ts makes the type-check prove they match this declaration.
 */
import type { Platform } from './platform-types';

export declare const platform: Platform;
