// The CloudWatch recording endpoint lives with the other stand-ins (local mode uses it as its metrics sink).
export * from '../../lambdas/local/cloudwatch-endpoint.ts';
