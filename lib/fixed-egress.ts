/**
 * A fixed public source address for the SMT fetch function: SMT allow-lists the public IP a third
 * party pulls from, and a Lambda outside a VPC has none. A VPC with one public and one private
 * subnet per AZ; a NAT gateway in each public subnet with an Elastic IP allocated here (so the
 * addresses are known, output and kept across NAT gateway replacements); the function in the
 * private subnets. One AZ by default; two survive an AZ outage at twice the NAT cost (docs/deploy.md).
 */
import { Fn, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

export interface FixedEgressProps {
  stage: string;
  /** NAT gateways, one per AZ, each with its own Elastic IP. */
  availabilityZones: 1 | 2;
}

export class FixedEgress extends Construct {
  public readonly vpc: ec2.Vpc;
  public readonly subnets: ec2.SubnetSelection = { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS };
  /** Egress only (HTTPS to AWS APIs, FTPS/SFTP to SMT): nothing may connect in. */
  public readonly securityGroup: ec2.SecurityGroup;
  /** The Elastic IPs the NAT gateways use: register their addresses with SMT. */
  public readonly elasticIps: ec2.CfnEIP[];

  constructor(scope: Construct, id: string, props: FixedEgressProps) {
    super(scope, id);
    this.elasticIps = Array.from({ length: props.availabilityZones }, (_, i) => {
      const eip = new ec2.CfnEIP(this, `ElasticIp${i + 1}`, {
        domain: 'vpc',
        tags: [{ key: 'Name', value: `meterbridge-${props.stage}-smt-egress-${i + 1}` }],
      });
      return eip;
    });
    const flowLogs = new logs.LogGroup(this, 'FlowLogs', { retention: logs.RetentionDays.THREE_MONTHS });
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: props.availabilityZones,
      natGateways: props.availabilityZones,
      natGatewayProvider: ec2.NatProvider.gateway({ eipAllocationIds: this.elasticIps.map((eip) => eip.attrAllocationId) }),
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 26 },
        { name: 'fetch', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 24 },
      ],
      // Rejected and accepted flows, for "did our request leave through the registered IP?" questions.
      flowLogs: { all: { destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs), trafficType: ec2.FlowLogTrafficType.ALL } },
      restrictDefaultSecurityGroup: true,
    });
    this.securityGroup = new ec2.SecurityGroup(this, 'FetchSecurityGroup', {
      vpc: this.vpc,
      description: `meterbridge ${props.stage}: SMT fetch function, outbound only`,
      allowAllOutbound: true,
    });
  }

  /** The public addresses, as a comma-separated string for a stack output. */
  public get addresses(): string {
    return Fn.join(
      ',',
      this.elasticIps.map((eip) => eip.attrPublicIp),
    );
  }

  /**
   * What Lambda needs on the function's role to attach it to the VPC (the AWS managed
   * AWSLambdaVPCAccessExecutionRole holds the same actions; an inline policy keeps cdk-nag IAM4 quiet
   * and the grant next to the reason for it).
   */
  public grantNetworkInterfaces(role: iam.IRole): iam.Policy {
    const policy = new iam.Policy(this, 'NetworkInterfacePolicy', {
      statements: [
        new iam.PolicyStatement({
          actions: [
            'ec2:CreateNetworkInterface',
            'ec2:DescribeNetworkInterfaces',
            'ec2:DescribeSubnets',
            'ec2:DeleteNetworkInterface',
            'ec2:AssignPrivateIpAddresses',
            'ec2:UnassignPrivateIpAddresses',
          ],
          resources: ['*'],
        }),
      ],
    });
    policy.attachToRole(role);
    Validations.of(policy).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        "Lambda creates and deletes the function's network interfaces itself, in subnets and with ids not known at deploy time; " +
        'ec2:Describe* support only "*". These are the actions of the AWS managed AWSLambdaVPCAccessExecutionRole, attached to this role only.',
    });
    return policy;
  }
}
