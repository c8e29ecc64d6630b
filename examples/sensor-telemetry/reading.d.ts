/** The sensor: reading-esp32.ts (an ADC pin) or reading-sim.ts (a synthetic wave), chosen by the manifest. */
export declare function readSensor(pin: number): number;
export declare const sensorName: string;
