// CloudWatch on moto lives with the other stand-ins (local mode uses it as its metrics sink).
export * from '../../local/cloudwatch.ts';
