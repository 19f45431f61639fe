// The synthetic shapes world of `mgllava synth` (scenes, rendering, questions, the data set writer).

export * from './world.js';
export * from './questions.js';
export * from './write.js';
