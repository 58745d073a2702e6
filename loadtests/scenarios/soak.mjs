export const name = 'soak';
export const title = 'todo';
export async function run() { return { pass: null, figures: 'not written' }; }
