/**
 * An EventBridge bus on moto with a rule that sends every readings-feed event to an SQS queue, so
 * a test observes what a subscriber would receive (moto delivers rule targets on PutEvents).
 */
import { randomUUID } from 'node:crypto';
import { CreateEventBusCommand, EventBridgeClient, PutRuleCommand, PutTargetsCommand } from '@aws-sdk/client-eventbridge';
import { CreateQueueCommand, DeleteMessageBatchCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { FEED_EVENT_SOURCE, type FeedEventDetail } from '../../lambdas/core/feed/feed.ts';
import type { Moto } from './moto.ts';

export interface ObservedBus {
  busName: string;
  busArn: string;
  events: EventBridgeClient;
  /** Every event delivered to the subscriber queue so far (drains the queue into `seen`). */
  drain(): Promise<Array<{ detailType: string; source: string; detail: FeedEventDetail }>>;
  destroy(): void;
}

export async function observedBus(moto: Moto): Promise<ObservedBus> {
  const config = { endpoint: moto.endpoint, region: moto.region, credentials: moto.credentials };
  const events = new EventBridgeClient(config);
  const sqs = new SQSClient(config);
  const suffix = randomUUID().slice(0, 8);
  const busName = `feed-test-${suffix}`;
  const bus = await events.send(new CreateEventBusCommand({ Name: busName }));
  const queue = await sqs.send(new CreateQueueCommand({ QueueName: `feed-subscriber-${suffix}` }));
  const queueUrl = queue.QueueUrl!;
  const attributes = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }));
  await events.send(
    new PutRuleCommand({ Name: `billing-${suffix}`, EventBusName: busName, EventPattern: JSON.stringify({ source: [FEED_EVENT_SOURCE] }) }),
  );
  await events.send(
    new PutTargetsCommand({
      Rule: `billing-${suffix}`,
      EventBusName: busName,
      Targets: [{ Id: 'subscriber', Arn: attributes.Attributes!.QueueArn! }],
    }),
  );
  const seen: Array<{ detailType: string; source: string; detail: FeedEventDetail }> = [];
  return {
    busName,
    busArn: bus.EventBusArn!,
    events,
    async drain() {
      for (;;) {
        const answer = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
        const messages = answer.Messages ?? [];
        if (messages.length === 0) return [...seen];
        for (const message of messages) {
          const event = JSON.parse(message.Body ?? '{}') as { 'detail-type': string; source: string; detail: FeedEventDetail };
          seen.push({ detailType: event['detail-type'], source: event.source, detail: event.detail });
        }
        await sqs.send(
          new DeleteMessageBatchCommand({
            QueueUrl: queueUrl,
            Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle! })),
          }),
        );
      }
    },
    destroy() {
      events.destroy();
      sqs.destroy();
    },
  };
}
