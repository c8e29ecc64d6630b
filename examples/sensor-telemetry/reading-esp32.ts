/** ESP32: the ADC pin `sensorPin` through the SDK's pins/analog (0..1023). */
import Analog from 'pins/analog';

export const sensorName = 'adc';

export function readSensor(pin: number): number {
  return Analog.read(pin);
}
