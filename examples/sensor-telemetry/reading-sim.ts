/** Simulator: no ADC; a slow triangle wave over 0..1023 so the hub sees readings change. */
import Time from 'time';

export const sensorName = 'simulated';

export function readSensor(_pin: number): number {
  const phase = Math.floor(Math.abs(Time.ticks) / 100) % 2046;
  return phase < 1024 ? phase : 2045 - phase;
}
