// Loaded with `node --require`: moves this Node process's clock by FLEET_CLOCK_SHIFT_MS
// (negative = the past). Tests use it to have real OpenClaw write sessions "13 days ago".
"use strict";
const shift = Number(process.env.FLEET_CLOCK_SHIFT_MS || 0);
if (shift) {
  const RealDate = Date;
  const realNow = RealDate.now.bind(RealDate);
  class ShiftedDate extends RealDate {
    constructor(...args) {
      if (args.length === 0) super(realNow() + shift);
      else super(...args);
    }
    static now() { return realNow() + shift; }
  }
  globalThis.Date = ShiftedDate;
}
