// `tcpkit top` on the terminal: an ink (React) component that samples the admin endpoint once a
// second and draws the screen; q or Ctrl-C quits.
import { Box, render, Text, useApp, useInput, useStdin } from 'ink';
import { createElement as h, useEffect, useState } from 'react';
import { History, takeSample } from './sample.js';
import { LABEL_WIDTH, screen } from './screen.js';

interface TopProps {
  base: string;
  intervalMs: number;
}

function Keys(): null {
  const { exit } = useApp();
  useInput((input) => {
    if (input === 'q') exit();
  });
  return null;
}

function Top({ base, intervalMs }: TopProps): ReturnType<typeof h> {
  const [history] = useState(() => new History());
  const [, setFrame] = useState(0);
  const [error, setError] = useState<string | undefined>(undefined);
  const { isRawModeSupported } = useStdin();
  useEffect(() => {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    const tick = async (): Promise<void> => {
      try {
        history.push(await takeSample(base));
        setError(undefined);
      } catch (e) {
        const cause = (e as { cause?: { code?: string } }).cause?.code;
        setError(`cannot read ${base}: ${cause ?? (e as Error).message} (retrying)`);
      }
      setFrame((n) => n + 1);
      if (!stopped) timer = setTimeout(tick, intervalMs);
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [base, intervalMs, history]);
  const lines = screen(history, base, error);
  return h(
    Box,
    { flexDirection: 'column', width: 80 },
    isRawModeSupported ? h(Keys) : null,
    ...lines.map((line, i) =>
      h(
        Text,
        { key: i, wrap: 'truncate-end' },
        h(Text, { bold: true, color: line.label === 'error' ? 'red' : 'cyan' }, line.label.padEnd(LABEL_WIDTH)),
        line.text,
      ),
    ),
  );
}

/** Runs the live view until q or Ctrl-C, or until `until` settles (the server it watches has closed). */
export async function runTop(base: string, intervalMs = 1000, until?: Promise<unknown>): Promise<void> {
  const app = render(h(Top, { base, intervalMs }), { exitOnCtrlC: true });
  void until?.finally(() => app.unmount());
  await app.waitUntilExit();
}
