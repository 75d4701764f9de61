// The moto launcher lives with the other stand-ins (local mode starts it too).
export * from '../../local/moto.ts';
