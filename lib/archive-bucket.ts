/**
 * A raw archive bucket: where an ingestion path keeps every original (an SMT file as fetched, a
 * READY callback as received) byte for byte, so anything can be replayed after a fix.
 *
 * SSE-S3 (the functions and replay tools need no key grants), versioned (an overwritten or
 * deleted original can be recovered), TLS-only with TLS 1.2 at least, public access blocked,
 * server access logs to a bucket of its own, colder storage after a while, old versions expire.
 */
import { Duration, Stack, Validations, type RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

export interface ArchiveBucketProps {
  /** Short name of what is archived, for descriptions and the access-log prefix, e.g. 'ready'. */
  readonly purpose: string;
  readonly removalPolicy: RemovalPolicy;
  /**
   * Days after which originals move to Glacier Instant Retrieval (still readable at once, for replays).
   *
   * @default 90
   */
  readonly coldAfterDays?: number;
  /**
   * Days a replaced or deleted version is kept.
   *
   * @default 30
   */
  readonly noncurrentVersionDays?: number;
}

export class ArchiveBucket extends Construct {
  public readonly bucket: s3.Bucket;
  /** Server access logs of `bucket` (kept a year). */
  public readonly accessLogsBucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: ArchiveBucketProps) {
    super(scope, id);

    this.accessLogsBucket = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      lifecycleRules: [{ expiration: Duration.days(365) }],
      removalPolicy: props.removalPolicy,
    });
    Validations.of(this.accessLogsBucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason: `This bucket is the access-log target of the ${props.purpose} archive; logging the log bucket would recurse.`,
    });

    this.bucket = new s3.Bucket(this, 'Bucket', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: `${props.purpose}-archive/`,
      lifecycleRules: [
        {
          id: 'cold-after',
          transitions: [{ storageClass: s3.StorageClass.GLACIER_INSTANT_RETRIEVAL, transitionAfter: Duration.days(props.coldAfterDays ?? 90) }],
        },
        { id: 'old-versions', noncurrentVersionExpiration: Duration.days(props.noncurrentVersionDays ?? 30) },
        { id: 'abandoned-uploads', abortIncompleteMultipartUploadAfter: Duration.days(2) },
      ],
      removalPolicy: props.removalPolicy,
    });
  }

  /**
   * Lets `role` write originals under `prefix` the way RawArchive does: PutObject (multipart
   * included), then HeadObject to verify the stored size, which needs s3:GetObject. Not
   * bucket.grantPut/grantRead: they add actions RawArchive never calls. The policy is its own,
   * so the cdk-nag acknowledgement for the prefix wildcard covers exactly this statement.
   */
  public grantArchiveWrite(scope: Construct, id: string, role: iam.IRole, prefix: string): iam.Policy {
    const policy = new iam.Policy(scope, id, {
      statements: [
        new iam.PolicyStatement({
          actions: ['s3:PutObject', 's3:GetObject', 's3:AbortMultipartUpload'],
          resources: [this.bucket.arnForObjects(`${prefix}/*`)],
        }),
        // Without s3:ListBucket, S3 answers a HeadObject on a key that does not exist yet with 403
        // instead of 404 (the writer checks before it uploads). Listing is confined to the prefix.
        new iam.PolicyStatement({
          actions: ['s3:ListBucket'],
          resources: [this.bucket.bucketArn],
          conditions: { StringLike: { 's3:prefix': [`${prefix}/*`] } },
        }),
      ],
    });
    policy.attachToRole(role);
    const stack = Stack.of(this);
    const logicalId = stack.resolve(stack.getLogicalId(this.bucket.node.defaultChild as s3.CfnBucket)) as string;
    Validations.of(policy).acknowledge({
      id: `AwsSolutions-IAM5[Resource::<${logicalId}.Arn>/${prefix}/*]`,
      reason: `Object keys are per original (one per file or callback); the wildcard is confined to the ${prefix}/ prefix of the ${this.node.id} bucket.`,
    });
    return policy;
  }
}
