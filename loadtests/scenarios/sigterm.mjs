export const name = 'sigterm';
export const title = 'todo';
export async function run() { return { pass: null, figures: 'not written' }; }
