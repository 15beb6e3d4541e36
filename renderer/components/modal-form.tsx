import type { FormEvent, ReactNode } from 'react';

/** A modal dialog that is a form: overlay, labelled by its title, submit on Enter. */
export function ModalForm({ titleId, title, onSubmit, children }: { titleId: string; title: ReactNode; onSubmit: () => void; children: ReactNode }) {
  return (
    <div className="overlay" role="presentation">
      <form
        className="dialog"
        role="dialog"
        aria-modal="true"
        aria-labelledby={titleId}
        onSubmit={(e: FormEvent) => {
          e.preventDefault();
          onSubmit();
        }}
      >
        <h2 id={titleId}>{title}</h2>
        {children}
      </form>
    </div>
  );
}
