import { guardRejects } from '../../shared/cache/semantic';

/** Both orders must agree: the guard is symmetric. */
function rejects(a: string, b: string): string | undefined {
  const ab = guardRejects(a, b);
  const ba = guardRejects(b, a);
  expect(ab === undefined).toBe(ba === undefined);
  return ab;
}

describe('guardRejects', () => {
  it.each([
    ['How do I reset my password?', 'How can I reset my password?'],
    ['What is the capital of France?', 'Tell me the capital of France'],
    [
      'Write a python function to reverse a linked list',
      'Write a Python function that reverses a linked list',
    ],
    ['flights from Paris to Rome', 'flights to Rome from Paris'],
    ['What are the health benefits of green tea?', 'What health benefits does green tea have?'],
    ['How to convert celsius to fahrenheit', 'how do I convert celsius into fahrenheit'],
    ['Summarize the plot of Hamlet', 'Give me a summary of the plot of Hamlet'],
    ['Is it safe to eat raw eggs?', 'Is eating raw eggs safe?'],
    ['Top five movies of 2020', 'Top 5 movies of 2020'],
    ['Explain recursion', 'Describe recursion'],
    ['Please explain recursion to me', 'explain recursion'],
  ])('accepts a rephrasing: %s | %s', (a, b) => {
    expect(rejects(a, b)).toBeUndefined();
  });

  it.each([
    ['order', 'flights from Paris to Rome', 'flights from Rome to Paris'],
    ['order', 'Is Python faster than Java?', 'Is Java faster than Python?'],
    ['order', 'python vs java for web apps', 'java vs python for web apps'],
    ['order', 'convert celsius to fahrenheit', 'convert fahrenheit to celsius'],
    ['order', 'Convert PDF into Word', 'Convert Word into PDF'],
    ['order', 'migrate mysql → postgres', 'migrate postgres → mysql'],
    ['order', 'should I learn algebra before geometry', 'should I learn geometry before algebra'],
  ])('rejects a reversal (%s): %s | %s', (kind, a, b) => {
    expect(rejects(a, b)).toMatch(new RegExp(`^${kind}`));
  });

  it.each([
    ['Is coffee good for you?', 'Is coffee not good for you?'],
    ['Why is my code working', "Why isn't my code working"],
    ['Why is my code working', 'Why is my code not working'.replace('not ', 'never ')],
    ['a cake recipe with eggs', 'a cake recipe without eggs'],
    ['list all fruits including apples', 'list all fruits except apples'],
    ['I can install it', 'I cannot install it'],
  ])('rejects a negation: %s | %s', (a, b) => {
    expect(rejects(a, b)).toMatch(/^negation|^contrast/);
  });

  it.each([
    ['How many calories in 100g of rice', 'How many calories in 200g of rice'],
    ['Plan a 3 day trip to Rome', 'Plan a 5 day trip to Rome'],
    ['Plan a three day trip to Rome', 'Plan a five day trip to Rome'],
    ['What happened in 1989', 'What happened in 1991'],
    ['Give me 10 ideas', 'Give me ideas'],
    ['What is 2.5 times 4', 'What is 25 times 4'],
  ])('rejects different numbers: %s | %s', (a, b) => {
    expect(rejects(a, b)).toMatch(/^number/);
  });

  it('reads number words and digits alike', () => {
    expect(rejects('Top five movies of 2020', 'Top 5 movies of 2020')).toBeUndefined();
    expect(rejects('twenty-five ways to relax', '25 ways to relax')).toBeUndefined();
    expect(rejects('three hundred words about Rome', '300 words about Rome')).toBeUndefined();
  });

  it.each([
    ['What is the capital of France?', 'What is the capital of Spain?'],
    ['Summarize the annual report of Acme Corp', 'Summarize the annual report of Globex Corp'],
    ['Explain the NASA budget', 'Explain the ESA budget'],
    ['How do I use the iPhone camera', 'How do I use the Pixel camera'],
    ['What does error E42 mean', 'What does error code mean'],
    ['Rename my_variable in the file', 'Rename other_variable in the file'],
  ])('rejects different entities: %s | %s', (a, b) => {
    expect(rejects(a, b)).toMatch(/^entity|^number/);
  });

  it('compares quoted strings', () => {
    expect(rejects('Summarize "War and Peace"', 'Summarize "Anna Karenina"')).toMatch(/^quoted/);
    expect(
      rejects("Translate 'good morning' to French", "translate 'good morning' to French"),
    ).toBeUndefined();
  });

  it('does not take a capitalised common word at the start of a sentence for a name', () => {
    expect(rejects('Describe the water cycle', 'Please describe the water cycle')).toBeUndefined();
    expect(rejects('What is the capital of France?', 'what is the capital of france')).toBeUndefined();
  });

  it.each([
    ['Should I buy Tesla stock', 'Should I sell Tesla stock'],
    ['How to increase my credit score', 'How to decrease my credit score'],
    ['what is the max value of an int', 'what is the min value of an int'],
    ['health benefits of green tea', 'health risks of green tea'],
    ['Is it safe to eat raw eggs?', 'Is it unsafe to eat raw eggs?'],
    ['Is it legal to record calls', 'Is it illegal to record calls'],
    ['a careful driver', 'a careless driver'],
    ['how to learn spanish', 'how to learn german'],
    ['reverse a list in python', 'reverse a list in rust'],
    ['convert 5 miles to km', 'convert 5 miles to meters'],
    ['When was Einstein born', 'Where was Einstein born'],
    ['Should I eat before running', 'Should I eat after running'],
  ])('rejects antonyms and category swaps: %s | %s', (a, b) => {
    expect(rejects(a, b)).toMatch(/^contrast|^order|^question/);
  });

  it('rejects the same sentence frame with its entities in another order (roles swapped)', () => {
    expect(
      guardRejects(
        'Did the Beatles influence the Rolling Stones?',
        'Did the Rolling Stones influence the Beatles?',
      ),
    ).toMatch(/^order: entities/);
    expect(
      guardRejects(
        'Copy the values of column A into column B in Excel.',
        'Copy the values of column B into column A in Excel.',
      ),
    ).toMatch(/^order/);
    // A reworded prompt has another frame: moving a clause is not a swap.
    expect(
      guardRejects('In Python, how do I read a CSV file?', 'How do I read a CSV file in Python?'),
    ).toBeUndefined();
    expect(guardRejects('What does NASA do?', 'what does NASA do')).toBeUndefined();
  });

  it('rejects a prompt that adds a qualifier', () => {
    expect(
      rejects('Write a blog post about friendship', 'Write a blog post about friendship for my grandmother'),
    ).toMatch(/^qualifier/);
    expect(rejects('best laptops', 'best laptops for students')).toMatch(/^qualifier/);
  });
});

// Each class of equivalence the guard knows, with a hard negative that must still be refused beside it.
describe('guardRejects: what does not change the question', () => {
  it.each([
    ['How many calories are in a banana?', 'What is the number of calories in a banana?'],
    ['Who invented the telephone?', 'By whom was the telephone invented?'],
    ['What is the capital of Australia?', 'Which is the capital of Australia?'],
    ['How do I reverse a list in Python?', 'What is the best way to reverse a list in Python?'],
    ['How do I undo a git commit?', 'What steps should I take to undo a git commit?'],
    ['How do I reduce stress?', 'What can I do to reduce stress?'],
    ['What causes inflation?', 'Why does inflation happen?'],
    ['How does caffeine affect sleep?', 'What is the effect of caffeine on sleep?'],
    ['What is the difference between TCP and UDP?', 'How does TCP differ from UDP?'],
    ['When should I prune apple trees?', 'What is the best time of year to prune apple trees?'],
    ['How far away is the Andromeda galaxy?', 'What is the distance to the Andromeda galaxy?'],
    ['Who painted the Mona Lisa?', 'Which artist painted the Mona Lisa?'],
    ['Who wrote Pride and Prejudice?', 'Who is the author of Pride and Prejudice?'],
    ['How often should I water basil?', 'How frequently should I water basil?'],
  ])('asks the same thing in another frame: %s | %s', (a, b) => {
    expect(rejects(a, b)).toBeUndefined();
  });

  it.each([
    ['question', 'When was the Suez Canal opened?', 'Where was the Suez Canal opened?'],
    ['question', 'Why do bees make honey?', 'How do bees make honey?'],
    ['question', 'How much does it cost to renew a passport?', 'How long does it take to renew a passport?'],
    ['question', 'What causes inflation?', 'What are the effects of inflation?'],
    ['question', 'What should I eat after a tooth extraction?', 'How should I eat after a tooth extraction?'],
    ['question', 'What is the difference between a violin and a viola?', 'What is a violin?'],
    ['question', 'How many moons does Mars have?', 'How far is Mars?'],
  ])('still refuses another kind of question (%s): %s | %s', (kind, a, b) => {
    expect(rejects(a, b)).toMatch(new RegExp(`^${kind}`));
  });

  it('reads a subordinate "when"/"where" clause as no question ("what … when opening a hive")', () => {
    expect(
      rejects(
        'When opening a hive, what protective gear should I wear?',
        'What protective gear should I wear when opening a hive?',
      ),
    ).toBeUndefined();
    expect(
      rejects('What should I do when my car overheats?', 'Where should I go when my car overheats?'),
    ).toMatch(/^question/);
  });

  it('does not take a capitalised English word at a sentence start for a name; names still count', () => {
    expect(
      rejects('Sorry to bother you, but how do I read a tide table?', 'How do I read a tide table?'),
    ).toBeUndefined();
    expect(
      rejects("Isn't it bad to brush right after eating?", 'Is it not bad to brush right after eating?'),
    ).toBeUndefined();
    expect(
      rejects('Whats the best age to start potty training', "What's the best age to start potty training?"),
    ).toBeUndefined();
    expect(
      rejects('Explian the causes of the First World War.', 'Explain the causes of the First World War.'),
    ).toBeUndefined();
    // a name at the start, or a name anywhere, is still a name
    expect(rejects('Paris has how many museums?', 'Lyon has how many museums?')).toMatch(/^entity/);
    expect(rejects('How many symphonies did Haydn write?', 'How many symphonies did Mozart write?')).toMatch(
      /^entity/,
    );
    expect(
      rejects('How do I install Docker on Ubuntu?', 'How do I install Dokcer on Ubuntu?'),
    ).toBeUndefined();
    expect(rejects('How do I install Docker on Ubuntu?', 'How do I install Podman on Ubuntu?')).toMatch(
      /^entity/,
    );
  });

  it('normalises possessives and contractions before comparing', () => {
    expect(
      rejects("Who's the composer of The Planets?", 'Who is the composer of The Planets?'),
    ).toBeUndefined();
    expect(rejects("Where's the Louvre located?", 'Where is the Louvre located?')).toBeUndefined();
    expect(rejects("Explain soccer's offside rule.", 'Explain the offside rule of soccer.')).toBeUndefined();
    expect(rejects("Let's plan a trip to Rome.", 'Let us plan a trip to Rome.')).toBeUndefined();
    // a contraction that negates still negates
    expect(rejects("Why doesn't my code compile?", 'Why does my code compile?')).toMatch(/^negation/);
    expect(rejects("I can't log in to my account", 'I can log in to my account')).toMatch(/^negation/);
  });

  it('lets politeness and restating words pass, not a qualifier that narrows', () => {
    expect(
      rejects('Would you mind explaining what a black hole is?', 'Explain what a black hole is.'),
    ).toBeUndefined();
    expect(
      rejects(
        'Please, if it is not too much trouble, list the rules of checkers.',
        'List the rules of checkers.',
      ),
    ).toBeUndefined();
    expect(rejects('What is the square root of 144?', 'Compute the square root of 144.')).toBeUndefined();
    expect(
      rejects('How many calories are in a banana?', 'How many calories does a banana contain?'),
    ).toBeUndefined();
    expect(rejects('What does DHCP do?', 'What is the purpose of DHCP?')).toBeUndefined();
    expect(rejects('What is a phoneme?', 'Define the term phoneme.')).toBeUndefined();
    // narrowing qualifiers are still refused
    expect(rejects('best laptops', 'best laptops for students')).toMatch(/^qualifier/);
    expect(rejects('What should I eat during pregnancy?', 'What should I eat after pregnancy?')).toMatch(
      /^contrast/,
    );
    expect(rejects('Please list the rules of checkers.', 'List the rules of checkers, not chess.')).toMatch(
      /^negation/,
    );
  });

  it('lets the items of a list trade places, not the roles of a verb', () => {
    expect(
      rejects(
        'What is the distance between Mars and Jupiter?',
        'What is the distance between Jupiter and Mars?',
      ),
    ).toBeUndefined();
    expect(
      rejects(
        'Are cucumbers and tomatoes good companion plants?',
        'Are tomatoes and cucumbers good companion plants?',
      ),
    ).toBeUndefined();
    expect(
      rejects(
        'Are Merlot and Cabernet Sauvignon often blended?',
        'Are Cabernet Sauvignon and Merlot often blended?',
      ),
    ).toBeUndefined();
    expect(rejects('Does gum disease cause tooth decay?', 'Does tooth decay cause gum disease?')).toMatch(
      /^order/,
    );
    expect(rejects('Did Nadal beat Federer in the final?', 'Did Federer beat Nadal in the final?')).toMatch(
      /^order/,
    );
    expect(rejects('Should I add flour and then eggs?', 'Should I add eggs and then flour?')).toMatch(
      /^order/,
    );
  });

  it('reads a passive clause in active order', () => {
    expect(
      rejects('When did Columbus reach the Americas?', 'When were the Americas reached by Columbus?'),
    ).toBeUndefined();
    expect(rejects('How do bees make honey?', 'How is honey made by bees?')).toBeUndefined();
    expect(
      rejects('Which team won the first Super Bowl?', 'The first Super Bowl was won by which team?'),
    ).toBeUndefined();
    expect(rejects('Did Nadal beat Federer?', 'Was Nadal beaten by Federer?')).toMatch(/^order/);
    expect(rejects('Did Nadal beat Federer?', 'Was Federer beaten by Nadal?')).toBeUndefined();
  });

  it('takes quotes that only mark a term as no difference; other quoted strings still differ', () => {
    expect(
      rejects('what does tacet mean in an orchestral part', 'What does "tacet" mean in an orchestral part?'),
    ).toBeUndefined();
    expect(rejects('What does "tacet" mean?', 'What does "tutti" mean?')).toMatch(
      /^quoted|^entity|^qualifier/,
    );
  });

  it('reads Roman numerals and ordinals as numbers', () => {
    expect(rejects('When did World War II end?', 'When did the Second World War end?')).toBeUndefined();
    expect(rejects('Who succeeded Henry VIII?', 'Who succeeded Henry VII?')).toMatch(/^number/);
    expect(rejects('What was the MIX rate of the CD?', 'What was the MIX rate of the CD?')).toBeUndefined();
  });
});

describe('guardRejects: a name written in lower case is not fixed into a function word', () => {
  // "athens" is one letter from "thens" (read as "then"): the typo fix used to erase the place, and a trip
  // from Athens to Istanbul was served the stored trip from Istanbul to Istanbul (bench:semantic at 100k).
  it.each([
    [
      'help me plan a 7 day trip from athens to istanbul in june',
      'Plan a 7 day trip from Istanbul to Istanbul in June',
    ],
    [
      "what's the cheapest way to get from athens to rome",
      'What is the cheapest way to get from Rome to Rome?',
    ],
    ['what is the weather in athens today', 'what is the weather today'],
    ['flights from athens to rome', 'flights to rome'],
  ])('refuses: %s | %s', (a, b) => {
    expect(rejects(a, b)).toMatch(/athens/i);
  });

  it('still fixes two swapped letters of a function word', () => {
    expect(rejects('waht is teh capital of france', 'what is the capital of france')).toBeUndefined();
  });
});
